//! Subject keys: the OpenSSH public key line a client sends to be certified.
//! [`check`] hands any text to `SubjectKey::parse` and asserts that nothing
//! panics and that an accepted key round-trips: the OpenSSH line written for
//! it parses to the same key (blob, fingerprint, nonce), and so does its blob.

use ssh_key::PublicKey;

use ca_server::subject_key::SubjectKey;

/// Asserts that `data`, as a key line, is refused or round-trips.
pub fn check(data: &[u8]) {
    // The line arrives in a JSON string: always UTF-8.
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(key) = SubjectKey::parse(line) else {
        return;
    };
    let written = key
        .public_key()
        .to_openssh()
        .expect("an accepted key has an OpenSSH line");
    let again = SubjectKey::parse(&written).expect("the line written for a key parses");
    assert_eq!(again.blob(), key.blob());
    assert_eq!(again.fingerprint(), key.fingerprint());
    assert_eq!(again.expected_nonce(), key.expected_nonce());
    let from_blob = PublicKey::from_bytes(key.blob()).expect("the blob parses");
    assert_eq!(from_blob.key_data(), key.public_key().key_data());
}
