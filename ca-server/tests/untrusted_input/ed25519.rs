//! Ed25519: one verdict per signature, whatever the load. The CA checks a
//! signature alone (`ed25519_batch::verify_one`) when it is idle or after a
//! failed batch, and in a batch equation (`ed25519_batch::all_hold`) under
//! load. [`check`] builds a signature from bytes, either raw or crafted (a key
//! and an `R` with chosen small-order components, second spellings of points,
//! `S + L`, another message), and asserts that the single check, the batch
//! equation alone and among good signatures (with fresh random weights each
//! round), and an independent statement of the rule all give one verdict. The
//! rule is ed25519-zebra's verification (ZIP 215: `S` reduced, the cofactored
//! equation) on canonically encoded points, with a key not of small order.
//!
//! Input layout (missing bytes read as zero):
//! - `0`, key (32), signature (64), message: raw;
//! - `1`, key torsion, `R` torsion, flags ([`Flags`]), secret scalar (32),
//!   nonce scalar (32), message: crafted. A torsion byte's low three bits
//!   pick a point of [`EIGHT_TORSION`] added to the point, its other bits
//!   which second spelling of the point is written, when the flags ask for
//!   one.

use std::sync::LazyLock;

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::Scalar;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha512};

use ca_server::ed25519_batch::{all_hold, verify_one, Ed25519Check};

/// How often the batch equation is tried, with fresh weights, per input when
/// fuzzing. A signature that a cofactorless batch let through passed one
/// batch in eight at worst.
pub const FUZZ_ROUNDS: usize = 8;

/// Bits of the crafted layout's flags byte.
pub struct Flags;

impl Flags {
    /// The nonce scalar is ignored: `R` is its small-order component alone.
    pub const R_SMALL_ORDER: u8 = 1;
    /// `R` is written in its second spelling, when it has one.
    pub const R_SECOND_SPELLING: u8 = 2;
    /// The key is written in its second spelling, when it has one.
    pub const KEY_SECOND_SPELLING: u8 = 4;
    /// `S + L` instead of `S`: the same scalar, not reduced.
    pub const S_PLUS_L: u8 = 8;
    /// Checked against another message than the one signed.
    pub const OTHER_MESSAGE: u8 = 16;
}

/// Asserts one verdict for the signature `data` describes, trying the batch
/// equation [`FUZZ_ROUNDS`] times.
pub fn check(data: &[u8]) {
    check_rounds(data, FUZZ_ROUNDS);
}

/// [`check`] with `rounds` tries of the batch equation; gives the verdict,
/// or `None` when `data` names no curve point as key.
pub fn check_rounds(data: &[u8], rounds: usize) -> Option<bool> {
    let subject = signature_from(data)?;
    let verdict = verify_one(&subject.key, &subject.message, &subject.signature);
    assert_eq!(
        verdict,
        rule(
            subject.key.as_bytes(),
            &subject.signature.to_bytes(),
            &subject.message
        ),
        "the single check departs from the rule"
    );
    assert_eq!(subject.verify(), verdict, "Ed25519Check::verify");
    let good = &*GOOD;
    for round in 0..rounds {
        assert_eq!(
            all_hold(std::iter::once(&subject)),
            verdict,
            "a batch of one, round {round}"
        );
        let mixed = [&good[0], &good[1], &subject, &good[2]];
        assert_eq!(
            all_hold(mixed.into_iter()),
            verdict,
            "among good signatures, round {round}"
        );
    }
    Some(verdict)
}

/// The crafted layout's bytes.
pub fn crafted(
    key_torsion: u8,
    r_torsion: u8,
    flags: u8,
    secret: [u8; 32],
    nonce: [u8; 32],
    message: &[u8],
) -> Vec<u8> {
    [
        &[1, key_torsion, r_torsion, flags][..],
        &secret,
        &nonce,
        message,
    ]
    .concat()
}

/// The raw layout's bytes.
pub fn raw(key: [u8; 32], signature: [u8; 64], message: &[u8]) -> Vec<u8> {
    [&[0][..], &key, &signature, message].concat()
}

/// The check `data` describes; `None` when its key is no curve point.
pub fn signature_from(data: &[u8]) -> Option<Ed25519Check> {
    let mut input = Input(data);
    match input.byte() {
        0 => {
            let key = input.array::<32>();
            let signature = Signature::from_bytes(&input.array::<64>());
            Some(Ed25519Check {
                key: VerifyingKey::from_bytes(&key).ok()?,
                message: input.0.to_vec(),
                signature,
            })
        }
        _ => {
            // The low three bits pick a small-order point; the others which
            // second spelling, when one is asked for.
            let (key_choice, r_choice) = (input.byte(), input.byte());
            let key_torsion = EIGHT_TORSION[usize::from(key_choice % 8)];
            let r_torsion = EIGHT_TORSION[usize::from(r_choice % 8)];
            let flags = input.byte();
            let secret = Scalar::from_bytes_mod_order(input.array::<32>());
            let nonce = if flags & Flags::R_SMALL_ORDER != 0 {
                input.array::<32>();
                Scalar::ZERO
            } else {
                Scalar::from_bytes_mod_order(input.array::<32>())
            };
            let message = input.0.to_vec();
            let mut key = (ED25519_BASEPOINT_POINT * secret + key_torsion)
                .compress()
                .to_bytes();
            if flags & Flags::KEY_SECOND_SPELLING != 0 {
                key = respelled(key, key_choice / 8);
            }
            let mut r = (ED25519_BASEPOINT_POINT * nonce + r_torsion)
                .compress()
                .to_bytes();
            if flags & Flags::R_SECOND_SPELLING != 0 {
                r = respelled(r, r_choice / 8);
            }
            let k = Scalar::from_bytes_mod_order_wide(
                &Sha512::new()
                    .chain_update(r)
                    .chain_update(key)
                    .chain_update(&message)
                    .finalize()
                    .into(),
            );
            let s = (nonce + k * secret).to_bytes();
            let s = if flags & Flags::S_PLUS_L != 0 {
                plus_group_order(s)
            } else {
                s
            };
            let mut message = message;
            if flags & Flags::OTHER_MESSAGE != 0 {
                message.push(b'!');
            }
            Some(Ed25519Check {
                key: VerifyingKey::from_bytes(&key).ok()?,
                message,
                signature: Signature::from_bytes(&[r, s].concat().try_into().ok()?),
            })
        }
    }
}

/// The rule, stated apart from the CA's code: ed25519-zebra's ZIP 215
/// verification, on a key and an `R` that are each the canonical encoding
/// of a point (they compress back to themselves), with a key not of small
/// order.
pub fn rule(key: &[u8; 32], signature: &[u8; 64], message: &[u8]) -> bool {
    let canonical = |bytes: &[u8; 32]| {
        CompressedEdwardsY(*bytes)
            .decompress()
            .is_some_and(|point| point.compress().to_bytes() == *bytes)
    };
    let small_order = CompressedEdwardsY(*key)
        .decompress()
        .is_none_or(|point| point.is_small_order());
    let r: [u8; 32] = signature[..32].try_into().expect("32 bytes");
    canonical(key)
        && !small_order
        && canonical(&r)
        && ed25519_zebra::VerificationKey::try_from(*key)
            .and_then(|key| key.verify(&ed25519_zebra::Signature::from_bytes(signature), message))
            .is_ok()
}

/// The other encodings that curve25519-dalek decompresses to the same point
/// as `bytes`: `y + p` for a `y` below 19, and the sign bit flipped on an `x`
/// of zero (the identity and the point of order two).
pub fn second_spellings(bytes: &[u8; 32]) -> Vec<[u8; 32]> {
    let Some(point) = CompressedEdwardsY(*bytes).decompress() else {
        return Vec::new();
    };
    let mut spellings = Vec::new();
    let mut y = *bytes;
    y[31] &= 0x7f;
    let sign = bytes[31] & 0x80;
    if y[1..].iter().all(|b| *b == 0) && y[0] < 19 {
        // y + p = y + 2^255 - 19, in 255 bits.
        let mut plus_p = [0xff; 32];
        plus_p[0] = 0xed + y[0];
        plus_p[31] = 0x7f | sign;
        spellings.push(plus_p);
    }
    if point == -point {
        for spelling in [*bytes].into_iter().chain(spellings.clone()) {
            let mut flipped = spelling;
            flipped[31] ^= 0x80;
            spellings.push(flipped);
        }
    }
    spellings.retain(|spelling| spelling != bytes);
    spellings
}

/// `spellings[choice]`, cycling, or `bytes` itself when there is none.
fn respelled(bytes: [u8; 32], choice: u8) -> [u8; 32] {
    let spellings = second_spellings(&bytes);
    if spellings.is_empty() {
        return bytes;
    }
    spellings[usize::from(choice) % spellings.len()]
}

/// `s + L` as 32 little-endian bytes (no carry out: `s` and `L` are below
/// 2^253).
fn plus_group_order(s: [u8; 32]) -> [u8; 32] {
    let order_minus_one = (-Scalar::ONE).to_bytes();
    let mut sum = [0u8; 32];
    let mut carry = 1u16;
    for ((out, a), b) in sum.iter_mut().zip(s).zip(order_minus_one) {
        let total = u16::from(a) + u16::from(b) + carry;
        *out = total.to_le_bytes()[0];
        carry = total >> 8;
    }
    sum
}

/// Good signatures that a bad one is hidden among: two by one key (as the
/// tokens of an issuer), one by another.
pub fn good_checks() -> [Ed25519Check; 3] {
    let issuer = SigningKey::from_bytes(&[7; 32]);
    let subject = SigningKey::from_bytes(&[9; 32]);
    let good = |key: &SigningKey, message: &[u8]| Ed25519Check {
        key: key.verifying_key(),
        message: message.to_vec(),
        signature: key.sign(message),
    };
    [
        good(&issuer, b"header.claims of one token"),
        good(&subject, b"a proof of possession"),
        good(&issuer, b"header.claims of another"),
    ]
}

static GOOD: LazyLock<[Ed25519Check; 3]> = LazyLock::new(good_checks);

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        self.array::<1>()[0]
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ca_server::ed25519_batch::Ed25519Batcher;

    /// How often each edge case meets the batch equation: a cofactorless
    /// batch let a signature with an error of order eight through once in
    /// eight tries, so 64 tries miss it with odds of about 1 in 5,000.
    const ROUNDS: usize = 64;

    const SECRET: [u8; 32] = [0x11; 32];
    const NONCE: [u8; 32] = [0x22; 32];
    const MESSAGE: &[u8] = b"eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9";

    /// The edge cases, each with the rule's verdict: (name, input, accepted).
    fn edge_cases() -> Vec<(String, Vec<u8>, bool)> {
        let mut cases = Vec::new();
        let mut case = |name: String, input: Vec<u8>, accepted: bool| {
            cases.push((name, input, accepted));
        };
        let honest = |flags| crafted(0, 0, flags, SECRET, NONCE, MESSAGE);
        case("an honest signature".into(), honest(0), true);
        case(
            "another message".into(),
            honest(Flags::OTHER_MESSAGE),
            false,
        );
        case("S + L".into(), honest(Flags::S_PLUS_L), false);
        let check = signature_from(&honest(0)).expect("honest");
        let (key, good) = (check.key.to_bytes(), check.signature.to_bytes());
        let with_s = |s: [u8; 32]| {
            let mut signature = good;
            signature[32..].copy_from_slice(&s);
            raw(key, signature, MESSAGE)
        };
        let order = plus_group_order([0; 32]);
        case("S = L".into(), with_s(order), false);
        case("S = 2^256 - 1".into(), with_s([0xff; 32]), false);
        case(
            "all zero: key, R and S".into(),
            raw([0; 32], [0; 64], MESSAGE),
            false,
        );
        case(
            "an all-zero signature by an honest key".into(),
            raw(key, [0; 64], MESSAGE),
            false,
        );
        for torsion in 0..8u8 {
            let small_key = |choice, flags| crafted(choice, 0, flags, [0; 32], NONCE, MESSAGE);
            case(
                format!("the small-order key {torsion}"),
                small_key(torsion, 0),
                false,
            );
            for spelling in 0..3u8 {
                case(
                    format!("the small-order key {torsion}, second spelling {spelling}"),
                    small_key(torsion + 8 * spelling, Flags::KEY_SECOND_SPELLING),
                    false,
                );
            }
            let signed = |key, r, flags| crafted(key, r, flags, SECRET, NONCE, MESSAGE);
            if torsion != 0 {
                case(
                    format!("R with the torsion component {torsion}"),
                    signed(0, torsion, 0),
                    true,
                );
                case(
                    format!("a key with the torsion component {torsion}"),
                    signed(torsion, 0, 0),
                    true,
                );
                case(
                    format!("key and R with the torsion components {torsion} and 3"),
                    signed(torsion, 3, 0),
                    true,
                );
            }
            case(
                format!("R the small-order point {torsion}"),
                signed(0, torsion, Flags::R_SMALL_ORDER),
                true,
            );
            // Only the identity, the point of order two and the two of order
            // four have second spellings; for the others this is the case
            // above again.
            let spelled = [0, 2, 4, 6].contains(&torsion);
            for spelling in 0..3u8 {
                case(
                    format!("R the small-order point {torsion}, second spelling {spelling}"),
                    signed(
                        0,
                        torsion + 8 * spelling,
                        Flags::R_SMALL_ORDER | Flags::R_SECOND_SPELLING,
                    ),
                    !spelled,
                );
            }
        }
        cases
    }

    #[test]
    fn single_and_batch_checks_give_each_edge_case_the_verdict_of_the_rule() {
        for (name, input, accepted) in edge_cases() {
            assert_eq!(check_rounds(&input, ROUNDS), Some(accepted), "{name}");
        }
    }

    #[test]
    fn every_second_spelling_of_a_small_order_point_is_tried() {
        // y = 1 (the identity): y + p, and each with the sign bit; y = p - 1:
        // the sign bit; y = 0 (order four, both signs): y + p.
        let spelled: Vec<usize> = EIGHT_TORSION
            .iter()
            .map(|point| second_spellings(&point.compress().to_bytes()).len())
            .collect();
        assert_eq!(spelled, [3, 0, 1, 0, 1, 0, 1, 0]);
    }

    #[test]
    fn random_signatures_by_random_keys_pass_both_checks() {
        for _ in 0..32 {
            let mut secret = [0u8; 32];
            let mut nonce = [0u8; 32];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut secret);
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
            let input = crafted(0, 0, 0, secret, nonce, b"a message");
            assert_eq!(check_rounds(&input, 4), Some(true));
        }
    }

    /// The batcher the CA runs, with a fresh one each round so that no pause
    /// after a failed batch turns the batch into single checks: each edge
    /// case among good signatures gets the single check's verdict.
    #[tokio::test]
    async fn the_batcher_gives_each_edge_case_its_single_verdict() {
        for (name, input, _) in edge_cases() {
            let single = signature_from(&input).is_some_and(|check| check.verify());
            for round in 0..ROUNDS / 4 {
                let [first, second, _] = good_checks();
                let subject = signature_from(&input).expect("a key");
                let verdicts = Ed25519Batcher::default()
                    .verify_all(vec![first, subject, second])
                    .await;
                assert_eq!(verdicts, [true, single, true], "{name}, round {round}");
            }
        }
    }
}
