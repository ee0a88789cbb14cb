//! KRLs: the revocation list a host downloads (`jit-ssh host sync-krl`) and
//! checks with `ca_proto::krl::parse` before it replaces the last good one.
//! [`check`] parses any bytes (nothing may panic), then reads the same bytes
//! as KRL contents, encodes them as the CA does, and asserts that the parser
//! reads back what was written.

use ca_proto::krl::{parse, KrlContents};

/// Asserts that `data` parses or is refused, and that the KRL encoded from
/// it parses back to its contents.
pub fn check(data: &[u8]) {
    let _ = parse(data);
    let contents = contents_from(data);
    let summary = parse(&contents.encode()).expect("an encoded KRL parses");
    assert_eq!(summary.version, contents.version);
    assert_eq!(summary.generated, contents.generated);
    assert_eq!(summary.comment, contents.comment);
    let mut serials = contents.serials.clone();
    serials.sort_unstable();
    serials.dedup();
    // The serials are listed once for each CA key, and only with a CA key.
    let sections = if serials.is_empty() {
        0
    } else {
        contents.ca_keys.len()
    };
    assert_eq!(summary.certificate_sections, sections);
    assert_eq!(summary.serials, serials.repeat(sections));
    let mut hashes = contents.key_hashes.clone();
    hashes.sort_unstable();
    hashes.dedup();
    assert_eq!(summary.keys, hashes.len());
}

/// KRL contents read from bytes: version, date, a comment, then counted lists
/// of CA keys, serials and key hashes (missing bytes read as zero).
fn contents_from(data: &[u8]) -> KrlContents {
    let mut input = data;
    let mut take = |n: usize| {
        let (head, tail) = input.split_at(n.min(input.len()));
        input = tail;
        let mut bytes = head.to_vec();
        bytes.resize(n, 0);
        bytes
    };
    let u64_of = |bytes: Vec<u8>| u64::from_be_bytes(bytes.try_into().expect("8 bytes"));
    let version = u64_of(take(8));
    let generated = u64_of(take(8));
    let comment_len = usize::from(take(1)[0]);
    let comment = String::from_utf8_lossy(&take(comment_len)).into_owned();
    let ca_keys = (0..take(1)[0] % 4)
        .map(|_| {
            let len = usize::from(take(1)[0]);
            take(len)
        })
        .collect();
    let serials = (0..take(1)[0]).map(|_| u64_of(take(8))).collect();
    let key_hashes = (0..take(1)[0] % 16)
        .map(|_| take(32).try_into().expect("32 bytes"))
        .collect();
    KrlContents {
        version,
        generated,
        comment,
        ca_keys,
        serials,
        key_hashes,
    }
}
