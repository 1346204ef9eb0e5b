//! Spare read buffers of one worker thread, handed from one request to the next.
//!
//! Every relayed request reads into two buffers of a few KiB: the client's request head and the
//! upstream's response. Allocated per request and freed at its end, they were most of the
//! allocator's work on the relay (jemalloc's slow path and the cache collection its traffic
//! triggers, `bench/instructions`). Kept here between requests instead, they cost a
//! thread-local push and pop; an idle connection still holds no buffer of its own.

use std::cell::RefCell;

/// The capacity a buffer is handed out with: a request head or a response head with a small
/// body in one read.
const CAPACITY: usize = 8 * 1024;
/// The largest buffer kept: one grown to relay a body in chunks (`upstream::BODY_CHUNK`) may
/// come back; anything larger (a huge head) is freed.
const LARGEST: usize = super::upstream::BODY_CHUNK;
/// The most buffers a thread keeps: as many as a busy worker has requests in flight, so the
/// stash holds at most 1 MiB however many connections come and go.
const KEPT: usize = 64;

thread_local! {
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with room for at least [`CAPACITY`] bytes.
pub(super) fn take() -> Vec<u8> {
    SPARE
        .with(|spare| spare.try_borrow_mut().ok().and_then(|mut spare| spare.pop()))
        .unwrap_or_else(|| Vec::with_capacity(CAPACITY))
}

/// Keeps `buf` for a later [`take`], emptied; one of the wrong size, or one too many, is freed.
pub(super) fn give(mut buf: Vec<u8>) {
    if !(CAPACITY..=LARGEST).contains(&buf.capacity()) {
        return;
    }
    buf.clear();
    SPARE.with(|spare| {
        if let Ok(mut spare) = spare.try_borrow_mut()
            && spare.len() < KEPT
        {
            spare.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_given_back_comes_out_empty_and_the_stash_is_bounded() {
        // The stash is the thread's: a test run on one thread (`--test-threads=1`) may find
        // buffers the relay's tests left in it.
        SPARE.with(|spare| spare.borrow_mut().clear());
        let mut buf = take();
        assert!(buf.is_empty() && buf.capacity() >= CAPACITY);
        buf.extend_from_slice(b"GET /secret HTTP/1.1\r\n\r\n");
        let at = buf.as_ptr();
        give(buf);
        let again = take();
        assert_eq!(again.as_ptr(), at, "the same allocation is handed out again");
        assert!(again.is_empty(), "nothing of the last request is visible in it");

        // Too small, too large: freed, not kept.
        give(Vec::with_capacity(64));
        give(Vec::with_capacity(LARGEST * 4));
        assert_eq!(SPARE.with(|spare| spare.borrow().len()), 0);

        for _ in 0..KEPT * 2 {
            give(Vec::with_capacity(CAPACITY));
        }
        assert_eq!(SPARE.with(|spare| spare.borrow().len()), KEPT);
    }
}
