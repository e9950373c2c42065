//! Fuzz target: image references and digests as users type them. Parsing must never panic, and
//! what parses must print back to something that parses to the same reference.
#![no_main]

use ferry::digest::Digest;
use ferry::reference::ImageRef;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = Digest::parse(s) {
        assert_eq!(d.as_str(), s, "a digest prints as it was given");
        assert_eq!(d.hex().len(), 64);
    }
    if let Ok(r) = ImageRef::parse(s) {
        let printed = r.to_string();
        let again = ImageRef::parse(&printed).expect("a printed reference parses again");
        assert_eq!(again.to_string(), printed, "printing is stable");
        // Paths built from a reference never escape: digests are strict hex.
        if let Some(d) = r.digest() {
            assert!(d.hex().bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }
});
