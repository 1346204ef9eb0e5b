//! Feeds arbitrary UTF-8 to `portico_edge::path::normalise` and checks what its unit tests check
//! on generated paths: it never panics, an accepted path comes out canonical, and normalising
//! that again changes nothing (and takes the borrowed fast path).

#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use portico_edge::path::normalise;

fuzz_target!(|data: &[u8]| {
    // Request targets reach the normaliser as `&str`; other bytes are not its input.
    let Ok(input) = std::str::from_utf8(data) else { return };
    let Ok(out) = normalise(input) else { return };

    assert!(out.starts_with('/'), "{input:?} → {out:?}");
    assert!(!out.contains("//"), "{input:?} → {out:?}");
    assert!(!out.contains('\\'), "{input:?} → {out:?}");
    assert!(out[1..].split('/').all(|s| s != "." && s != ".."), "{input:?} → {out:?}");
    let upper = out.to_ascii_uppercase();
    assert!(!upper.contains("%2F") && !upper.contains("%2E"), "{input:?} → {out:?}");
    // Allocating means something changed, and nothing changed means no allocation.
    assert_eq!(matches!(out, Cow::Borrowed(_)), *out == *input, "{input:?} → {out:?}");

    match normalise(&out) {
        Ok(Cow::Borrowed(again)) if again == out => {}
        again => panic!("not idempotent: {input:?} → {out:?} → {again:?}"),
    }
});
