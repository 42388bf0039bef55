//! Bytes that must not outlive their use: a private key's file and DER
//! (keys.rs), the ticket keys (ticket/keys.rs), a ticket's opened state
//! (ticket/mod.rs). Its own module so that the engine's side of the
//! tickets wipes what it opens without importing key loading.

/// Secret bytes we hold: overwritten before their memory is freed.
pub(crate) struct Secret(pub(crate) Vec<u8>);

impl Drop for Secret {
    fn drop(&mut self) {
        for b in self.0.iter_mut() {
            // SAFETY: a valid, exclusive reference; volatile so that the
            // compiler cannot drop the stores as dead.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    }
}
