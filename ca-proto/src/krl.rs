//! OpenSSH key revocation lists (KRL), the binary format of OpenSSH's
//! `PROTOCOL.krl`: encoding (the CA serves one at `GET /v1/krl`) and a strict
//! structural parser (hosts check a downloaded KRL before it replaces the
//! last good one, since a `RevokedKeys` file sshd cannot read locks everyone
//! out).
//!
//! Layout written here:
//!
//! ```text
//! uint64 KRL_MAGIC ("SSHKRL\n\0")   uint32 format version (1)
//! uint64 krl_version                uint64 generated_date
//! uint64 flags (0)                  string reserved ("")   string comment
//! per CA key:   byte 1 (certificates) string { string ca_key, string reserved,
//!                                              byte 0x20, string { uint64 serial... } }
//! if any keys:  byte 5 (SHA-256 fingerprints) string { string hash[32]... }
//! ```
//!
//! Serials and hashes are written sorted and deduplicated, as `ssh-keygen -k`
//! does and as the specification requires for hashes. No in-band signature
//! section (type 4) is ever written: OpenSSH 9.4 and later refuse KRLs that
//! carry one, so the CA signs the KRL bytes with SSHSIG instead
//! ([`KRL_SIGNATURE_NAMESPACE`]), which the parser here also refuses to accept
//! in-band.

/// `"SSHKRL\n\0"` as a big-endian `uint64`.
pub const KRL_MAGIC: u64 = 0x5353_484b_524c_0a00;
/// The only KRL format version.
pub const KRL_FORMAT_VERSION: u32 = 1;
/// SSHSIG namespace of the CA's detached signature over the KRL bytes.
pub const KRL_SIGNATURE_NAMESPACE: &str = "jit-ssh-krl-v1@jit-ssh";
/// Response header of `GET /v1/krl` carrying that signature: standard base64
/// of the armored SSHSIG text (`base64 -d` gives what `ssh-keygen -Y verify`
/// reads).
pub const KRL_SIGNATURE_HEADER: &str = "x-jit-ssh-krl-signature";

const SECTION_CERTIFICATES: u8 = 1;
const SECTION_EXPLICIT_KEY: u8 = 2;
const SECTION_FINGERPRINT_SHA1: u8 = 3;
const SECTION_SIGNATURE: u8 = 4;
const SECTION_FINGERPRINT_SHA256: u8 = 5;
const SECTION_EXTENSION: u8 = 255;
const CERT_SERIAL_LIST: u8 = 0x20;
const CERT_SERIAL_RANGE: u8 = 0x21;
const CERT_SERIAL_BITMAP: u8 = 0x22;
const CERT_KEY_ID: u8 = 0x23;
const CERT_EXTENSION: u8 = 0x39;

/// What a KRL revokes, ready to encode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KrlContents {
    /// Increases with every change of the revocation state.
    pub version: u64,
    /// Generation time, Unix seconds.
    pub generated: u64,
    /// Free text.
    pub comment: String,
    /// SSH wire blobs of the CA keys whose certificates `serials` revoke.
    pub ca_keys: Vec<Vec<u8>>,
    /// Revoked certificate serials (of every key in `ca_keys`).
    pub serials: Vec<u64>,
    /// SHA-256 of revoked plain public key blobs: the key and every
    /// certificate for it are refused.
    pub key_hashes: Vec<[u8; 32]>,
}

impl KrlContents {
    /// The KRL bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut serials = self.serials.clone();
        serials.sort_unstable();
        serials.dedup();
        let mut hashes = self.key_hashes.clone();
        hashes.sort_unstable();
        hashes.dedup();
        let mut out = Vec::new();
        out.extend_from_slice(&KRL_MAGIC.to_be_bytes());
        out.extend_from_slice(&KRL_FORMAT_VERSION.to_be_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.generated.to_be_bytes());
        out.extend_from_slice(&0u64.to_be_bytes());
        put_string(&mut out, b"");
        put_string(&mut out, self.comment.as_bytes());
        if !serials.is_empty() {
            let mut list = Vec::with_capacity(serials.len() * 8);
            for serial in &serials {
                list.extend_from_slice(&serial.to_be_bytes());
            }
            for ca_key in &self.ca_keys {
                let mut section = Vec::new();
                put_string(&mut section, ca_key);
                put_string(&mut section, b"");
                section.push(CERT_SERIAL_LIST);
                put_string(&mut section, &list);
                out.push(SECTION_CERTIFICATES);
                put_string(&mut out, &section);
            }
        }
        if !hashes.is_empty() {
            let mut section = Vec::new();
            for hash in &hashes {
                put_string(&mut section, hash);
            }
            out.push(SECTION_FINGERPRINT_SHA256);
            put_string(&mut out, &section);
        }
        out
    }
}

/// What [`parse`] found in a KRL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KrlSummary {
    /// `krl_version`.
    pub version: u64,
    /// `generated_date`.
    pub generated: u64,
    /// The comment.
    pub comment: String,
    /// Certificate sections.
    pub certificate_sections: usize,
    /// Serials listed individually.
    pub serials: Vec<u64>,
    /// Key hashes (SHA-1 and SHA-256) and explicit keys.
    pub keys: usize,
}

/// Why bytes are not a KRL this parser accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KrlError {
    /// Empty input.
    #[error("the KRL is empty")]
    Empty,
    /// Not the KRL magic.
    #[error("not an OpenSSH KRL (bad magic)")]
    BadMagic,
    /// Another format version.
    #[error("unsupported KRL format version {0}")]
    Version(u32),
    /// Truncated or inconsistent.
    #[error("malformed KRL: {0}")]
    Malformed(&'static str),
    /// An in-band signature section, which OpenSSH 9.4+ refuses to load.
    #[error("the KRL carries an in-band signature section, which OpenSSH 9.4 and later refuse")]
    InBandSignature,
    /// A section type OpenSSH does not know.
    #[error("unknown KRL section type {0}")]
    UnknownSection(u8),
}

/// Checks that `bytes` are a complete, well-formed KRL that OpenSSH loads.
pub fn parse(bytes: &[u8]) -> Result<KrlSummary, KrlError> {
    if bytes.is_empty() {
        return Err(KrlError::Empty);
    }
    let mut r = Reader(bytes);
    if r.u64().map_err(|_| KrlError::BadMagic)? != KRL_MAGIC {
        return Err(KrlError::BadMagic);
    }
    let format = r.u32()?;
    if format != KRL_FORMAT_VERSION {
        return Err(KrlError::Version(format));
    }
    let mut summary = KrlSummary {
        version: r.u64()?,
        generated: r.u64()?,
        ..KrlSummary::default()
    };
    let _flags = r.u64()?;
    let _reserved = r.string()?;
    summary.comment = String::from_utf8_lossy(r.string()?).into_owned();
    while !r.0.is_empty() {
        let kind = r.u8()?;
        if kind == SECTION_SIGNATURE {
            return Err(KrlError::InBandSignature);
        }
        let mut section = Reader(r.string()?);
        match kind {
            SECTION_CERTIFICATES => {
                summary.certificate_sections += 1;
                let _ca_key = section.string()?;
                let _reserved = section.string()?;
                while !section.0.is_empty() {
                    let sub = section.u8()?;
                    let mut data = Reader(section.string()?);
                    match sub {
                        CERT_SERIAL_LIST => {
                            while !data.0.is_empty() {
                                summary.serials.push(data.u64()?);
                            }
                        }
                        CERT_SERIAL_RANGE => {
                            let (low, high) = (data.u64()?, data.u64()?);
                            if low > high {
                                return Err(KrlError::Malformed(
                                    "serial range ends before it starts",
                                ));
                            }
                        }
                        CERT_SERIAL_BITMAP => {
                            let _offset = data.u64()?;
                            let _bitmap = data.string()?;
                        }
                        CERT_KEY_ID => {
                            while !data.0.is_empty() {
                                let _key_id = data.string()?;
                            }
                        }
                        CERT_EXTENSION => {
                            let _name = data.string()?;
                            let _critical = data.u8()?;
                            let _contents = data.string()?;
                        }
                        _ => return Err(KrlError::Malformed("unknown certificate subsection")),
                    }
                    if !data.0.is_empty() {
                        return Err(KrlError::Malformed("trailing data in a subsection"));
                    }
                }
            }
            SECTION_EXPLICIT_KEY | SECTION_FINGERPRINT_SHA1 | SECTION_FINGERPRINT_SHA256 => {
                let expected = match kind {
                    SECTION_FINGERPRINT_SHA1 => Some(20),
                    SECTION_FINGERPRINT_SHA256 => Some(32),
                    _ => None,
                };
                while !section.0.is_empty() {
                    let blob = section.string()?;
                    if expected.is_some_and(|len| blob.len() != len) {
                        return Err(KrlError::Malformed("fingerprint of the wrong length"));
                    }
                    summary.keys += 1;
                }
            }
            SECTION_EXTENSION => {
                let _name = section.string()?;
                let _critical = section.u8()?;
                let _contents = section.string()?;
            }
            other => return Err(KrlError::UnknownSection(other)),
        }
        if !section.0.is_empty() {
            return Err(KrlError::Malformed("trailing data in a section"));
        }
    }
    Ok(summary)
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    // KRL sections are far below 4 GiB: the CA lists only unexpired
    // certificates of minute-scale lifetime.
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], KrlError> {
        if self.0.len() < n {
            return Err(KrlError::Malformed("truncated"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, KrlError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, KrlError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, KrlError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(b))
    }

    fn string(&mut self) -> Result<&'a [u8], KrlError> {
        let len = self.u32()? as usize;
        self.take(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_krl_is_the_bare_header() {
        let bytes = KrlContents {
            version: 7,
            generated: 1_700_000_000,
            comment: "c".into(),
            ..KrlContents::default()
        }
        .encode();
        assert_eq!(&bytes[..8], b"SSHKRL\n\0");
        assert_eq!(bytes.len(), 8 + 4 + 8 + 8 + 8 + 4 + 4 + 1);
        let summary = parse(&bytes).expect("parses");
        assert_eq!(summary.version, 7);
        assert_eq!(summary.comment, "c");
        assert_eq!(summary.certificate_sections, 0);
    }

    #[test]
    fn serials_are_sorted_deduplicated_and_listed_per_ca() {
        let bytes = KrlContents {
            ca_keys: vec![b"ca-one".to_vec(), b"ca-two".to_vec()],
            serials: vec![9, 3, 9, u64::MAX],
            key_hashes: vec![[2; 32], [1; 32]],
            ..KrlContents::default()
        }
        .encode();
        let summary = parse(&bytes).expect("parses");
        assert_eq!(summary.certificate_sections, 2);
        assert_eq!(summary.serials, [3, 9, u64::MAX, 3, 9, u64::MAX]);
        assert_eq!(summary.keys, 2);
    }

    #[test]
    fn garbage_truncation_and_in_band_signatures_are_refused() {
        assert_eq!(parse(b""), Err(KrlError::Empty));
        assert_eq!(parse(b"<html>oops</html>"), Err(KrlError::BadMagic));
        let good = KrlContents {
            ca_keys: vec![b"ca".to_vec()],
            serials: vec![1],
            ..KrlContents::default()
        }
        .encode();
        let header_len = KrlContents::default().encode().len();
        for cut in (1..good.len()).filter(|&cut| cut != header_len) {
            assert!(parse(&good[..cut]).is_err(), "truncated at {cut} accepted");
        }
        let mut signed = KrlContents::default().encode();
        signed.push(SECTION_SIGNATURE);
        put_string(&mut signed, b"key");
        put_string(&mut signed, b"sig");
        assert_eq!(parse(&signed), Err(KrlError::InBandSignature));
        let mut unknown = KrlContents::default().encode();
        unknown.push(9);
        put_string(&mut unknown, b"");
        assert_eq!(parse(&unknown), Err(KrlError::UnknownSection(9)));
    }
}
