//! Bytes that must not outlive their use: a private key's file and DER
//! (keys.rs), the ticket keys (ticket/keys.rs), a ticket's opened state
//! (ticket/mod.rs). Its own module so that the engine's side of the
//! tickets wipes what it opens without importing key loading.

/// Secret bytes we hold: overwritten before their memory is freed.
pub(crate) struct Secret(pub(crate) Vec<u8>);

impl Drop for Secret {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// Zeros the whole block of `v`, not only its length: bytes past it are
/// those of a truncation, or those a read left past what it reported.
fn wipe(v: &mut Vec<u8>) {
    let block = v.as_mut_ptr();
    for i in 0..v.capacity() {
        // SAFETY: within the block the Vec owns (its capacity), which
        // nothing else refers to; any byte is a valid u8. Volatile, so that
        // the compiler cannot drop the stores as dead.
        unsafe { std::ptr::write_volatile(block.add(i), 0) };
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spare_capacity_is_wiped_too() {
        let mut v = Vec::with_capacity(64);
        v.extend_from_slice(&[0xa5; 48]);
        v.truncate(16);
        wipe(&mut v);
        // SAFETY: the 64 bytes of the block, all written above (48 by
        // extend_from_slice, then all by wipe).
        let block = unsafe { std::slice::from_raw_parts(v.as_ptr(), 64) };
        assert!(block.iter().all(|&b| b == 0), "{block:?}");
    }
}
