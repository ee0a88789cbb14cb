//! Other spellings of a real compact JWS: the same header and payload, the
//! signature segment written differently. Some still verify (the ECDSA
//! twin `(r, n - s)`), the others are re-encodings a lax decoder might take
//! (spare base64url bits set, padding, the standard alphabet, DER, a leading
//! zero byte, `s + n`, `S + L`). Tests present them after the original was
//! spent: a CA must refuse every one, never count it as a new token.

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::Value;

/// The order of the P-256 group, big-endian.
const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// The order of the P-384 group, big-endian.
const P384_ORDER: [u8; 48] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc7, 0x63, 0x4d, 0x81, 0xf4, 0x37, 0x2d, 0xdf,
    0x58, 0x1a, 0x0d, 0xb2, 0x48, 0xb0, 0xa7, 0x7a, 0xec, 0xec, 0x19, 0x6a, 0xcc, 0xc5, 0x29, 0x73,
];

/// The order of the Ed25519 group, little-endian (as `S` is written).
const ED25519_ORDER: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// The ECDSA twin of `token` (ES256 or ES384): `(r, n - s)` instead of
/// `(r, s)`, a signature of the same signing input by the same key, which
/// every ECDSA verifier accepts.
pub fn ecdsa_twin(token: &str) -> String {
    let signature = signature(token);
    let order: &[u8] = match signature.len() {
        64 => &P256_ORDER,
        96 => &P384_ORDER,
        n => panic!("not an ES256 or ES384 signature: {n} bytes"),
    };
    let (r, s) = signature.split_at(signature.len() / 2);
    let mut twin = r.to_vec();
    twin.extend(subtract(order, s));
    with_signature_bytes(token, &twin)
}

/// Re-encodings of `token`'s signature that a strict verifier refuses: each
/// names a spelling and carries the token written so. `alg` is the token's
/// algorithm; `jwk` the issuer's public key (for RSA's `s + n`).
pub fn re_encodings(token: &str, alg: &str, jwk: &Value) -> Vec<(&'static str, String)> {
    let signature = signature(token);
    let text = token.rsplit('.').next().unwrap();
    let mut cases = vec![
        ("leading zero byte", {
            let mut longer = vec![0];
            longer.extend(&signature);
            with_signature_bytes(token, &longer)
        }),
        ("empty signature", with_signature(token, "")),
    ];
    if let Some(padded) = padded(token, signature.len()) {
        cases.push(("padded base64url", padded));
    }
    if let Some(spare) = spare_bits_set(text) {
        cases.push(("spare base64url bits set", with_signature(token, &spare)));
    }
    if text.contains(['-', '_']) {
        let standard = STANDARD_NO_PAD.encode(&signature);
        cases.push(("standard base64 alphabet", with_signature(token, &standard)));
    }
    match alg {
        "ES256" | "ES384" => {
            let (r, s) = signature.split_at(signature.len() / 2);
            cases.push(("DER", with_signature_bytes(token, &der(r, s))));
        }
        "RS256" => {
            let modulus = URL_SAFE_NO_PAD
                .decode(jwk["n"].as_str().expect("an RSA JWK has n"))
                .unwrap();
            cases.push((
                "s + n",
                with_signature_bytes(token, &add(&signature, &modulus)),
            ));
        }
        "EdDSA" => {
            let mut s_plus_l = signature.clone();
            add_le(&mut s_plus_l[32..], &ED25519_ORDER);
            cases.push(("S + L", with_signature_bytes(token, &s_plus_l)));
        }
        other => panic!("no re-encodings for {other}"),
    }
    cases
}

/// The decoded signature of `token`.
pub fn signature(token: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(token.rsplit('.').next().unwrap())
        .expect("a compact JWS")
}

/// `token` with the signature segment `text`.
pub fn with_signature(token: &str, text: &str) -> String {
    let (input, _) = token.rsplit_once('.').expect("a compact JWS");
    format!("{input}.{text}")
}

fn with_signature_bytes(token: &str, bytes: &[u8]) -> String {
    with_signature(token, &URL_SAFE_NO_PAD.encode(bytes))
}

/// `token` with the `=` padding base64 would add to a signature of `len`
/// bytes, when it would add some.
fn padded(token: &str, len: usize) -> Option<String> {
    let padding = (3 - len % 3) % 3;
    (padding > 0).then(|| format!("{token}{}", "=".repeat(padding)))
}

/// `text` with the lowest spare bit of its last character set, when its
/// length leaves spare bits: the same bytes to a decoder that ignores them.
fn spare_bits_set(text: &str) -> Option<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let spare = match text.len() % 4 {
        2 => 4,
        3 => 2,
        _ => return None,
    };
    let last = *text.as_bytes().last()?;
    let index = ALPHABET.iter().position(|&c| c == last)?;
    assert_eq!(
        index % (1 << spare),
        0,
        "a canonical encoding has zero spare bits"
    );
    let mut spelled = text[..text.len() - 1].to_string();
    spelled.push(ALPHABET[index + 1] as char);
    Some(spelled)
}

/// `a - b` for big-endian numbers of one length, `a >= b`.
fn subtract(a: &[u8], b: &[u8]) -> Vec<u8> {
    assert_eq!(a.len(), b.len());
    let mut out = vec![0; a.len()];
    let mut borrow = 0i16;
    for i in (0..a.len()).rev() {
        let mut digit = i16::from(a[i]) - i16::from(b[i]) - borrow;
        borrow = i16::from(digit < 0);
        if digit < 0 {
            digit += 256;
        }
        out[i] = digit as u8;
    }
    assert_eq!(borrow, 0, "a >= b");
    out
}

/// `a + b` for big-endian numbers of one length; one byte longer if it
/// carries out.
fn add(a: &[u8], b: &[u8]) -> Vec<u8> {
    assert_eq!(a.len(), b.len());
    let mut out = vec![0; a.len()];
    let mut carry = 0u16;
    for i in (0..a.len()).rev() {
        let sum = u16::from(a[i]) + u16::from(b[i]) + carry;
        out[i] = sum as u8;
        carry = sum >> 8;
    }
    if carry > 0 {
        out.insert(0, carry as u8);
    }
    out
}

/// `a += b` for little-endian numbers of one length (the carry out is lost:
/// `S + L` stays below 2^256).
fn add_le(a: &mut [u8], b: &[u8]) {
    let mut carry = 0u16;
    for (x, y) in a.iter_mut().zip(b) {
        let sum = u16::from(*x) + u16::from(*y) + carry;
        *x = sum as u8;
        carry = sum >> 8;
    }
}

/// The DER `SEQUENCE { INTEGER r, INTEGER s }` of a fixed-size ECDSA
/// signature (short lengths: r and s are at most 49 bytes here).
fn der(r: &[u8], s: &[u8]) -> Vec<u8> {
    let integer = |bytes: &[u8]| {
        let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|&b| b == 0).collect();
        let mut value = if trimmed.first().is_some_and(|&b| b & 0x80 != 0) {
            vec![0]
        } else {
            Vec::new()
        };
        value.extend(trimmed);
        let mut out = vec![0x02, value.len() as u8];
        out.extend(value);
        out
    };
    let body = [integer(r), integer(s)].concat();
    let mut out = vec![0x30];
    if body.len() >= 0x80 {
        out.push(0x81);
    }
    out.push(body.len() as u8);
    out.extend(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_on_byte_strings() {
        assert_eq!(subtract(&[1, 0], &[0, 1]), [0, 255]);
        assert_eq!(add(&[255, 255], &[0, 1]), [1, 0, 0]);
        let mut le = [255, 0];
        add_le(&mut le, &[1, 0]);
        assert_eq!(le, [0, 1]);
    }

    #[test]
    fn spare_bits_are_set_only_where_the_length_leaves_some() {
        // 2 bytes: 3 characters, 2 spare bits.
        assert_eq!(spare_bits_set("AAA").as_deref(), Some("AAB"));
        assert_eq!(spare_bits_set("AAAA"), None);
    }
}
