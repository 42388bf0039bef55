//! The heap, with large blocks on page boundaries, so that the relay's
//! copies run at the same speed whatever the heap's layout; and, in the
//! processes that read private keys (the key holder, `-t`), every block
//! wiped before it is freed.
//!
//! rustls copies every record at least once between a buffer of ours and
//! a `Vec` of its own: received plaintext into a fresh `Vec`, application
//! data into the `Vec` it seals in place. glibc's memcpy moves large blocks
//! with `rep movsb`, which some CPUs (AMD Zen 3 measured: 1 GB/s against
//! 15 GB/s) run 15 times slower when the destination is 1 to 63 bytes past
//! the source modulo 4 KiB. With malloc choosing the `Vec`'s address, which
//! case a process hit depended on its heap layout: client-to-application
//! bulk cost twice as much in one harness as in another. A block of 4 KiB
//! or more from here starts at a fixed offset past a page boundary, so the
//! engine, which owns the other side of each copy, can place its bytes at a
//! distance that is never in that window (src/engine/io.rs and conn.rs).
//! Small blocks, most of the handshake's, are malloc's as before.
//!
//! When it may go. It works around two things, and goes when either does:
//! - glibc's choice, in the static binary (the glibc of the build machine):
//!   2.36 (Debian 12) copies blocks above `x86_rep_movsb_threshold` with
//!   `rep movsb` (2112 bytes on CPUs with FSRM, Zen 3 among them), whatever
//!   the distance. Later glibc, fixing sourceware bug 30994 (`rep movsb`
//!   many times slower on Zen 3 and Zen 4 for some alignments), raised
//!   that threshold on those CPUs far above a record's 16 KiB: then no
//!   record copy takes `rep movsb`. `ld.so --list-tunables` of the build
//!   machine's glibc, run on the CPU in question, shows the threshold.
//! - rustls' copies, in 0.23: `CommonState::take_received_plaintext`
//!   (common_state.rs: the decrypted record into `received_plaintext`, a
//!   fresh `Vec`) and the encrypters' `PrefixedPayload::with_capacity` and
//!   `extend_from_chunks` (crypto/aws_lc_rs/tls13.rs and tls12.rs: the
//!   plaintext into the `Vec` sealed in place). A rustls that decrypts in
//!   our buffer and seals into it leaves no copy for this to place.
//!
//! Whether it still pays: on the machine at hand (a Zen 3 if there is
//! one), `bench/compare with=BIN without=BIN2` (BIN2 built with the
//! `#[global_allocator]` line of src/main.rs removed), both bulk
//! directions, with both clients (bench/README.md): if `without` is no
//! dearer and the Python and C clients agree within noise, it may go. A
//! quicker look at the trap alone: the same run of the engine with
//! `GLIBC_TUNABLES=glibc.cpu.x86_rep_movsb_threshold=1000000000` (no `rep
//! movsb`) in a wrapper script; if that changes nothing, neither does this.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};

const PAGE: usize = 4096;

/// Whether every block is overwritten with zeros before it goes back to
/// malloc (`wipe_on_free`).
static WIPE: AtomicBool = AtomicBool::new(false);

/// From now on, this process wipes every block before it frees it: the key
/// holder (src/holder/) and `-t`, which read private keys. Every transient
/// copy of a key file's text or DER goes then, ours and those we cannot
/// reach (rustls-pki-types' PEM decoder keeps the base64 text of a block in
/// a `Vec` of its own while it decodes), and so do the spare capacity of a
/// `Vec` and the old block of one that grew. Not in the engine, which holds
/// no key: there a wipe would cost every record's buffers for nothing.
pub fn wipe_on_free() {
    WIPE.store(true, Ordering::Relaxed);
}

/// Zeros `len` bytes at `ptr`, in a way the compiler may not drop as dead
/// stores before a free (explicit_bzero(3), glibc and musl alike).
/// SAFETY (the caller's): `ptr` is valid for writes of `len` bytes: a
/// block of ours, about to be freed.
unsafe fn wipe(ptr: *mut u8, len: usize) {
    if WIPE.load(Ordering::Relaxed) {
        libc::explicit_bzero(ptr.cast(), len);
    }
}

/// Where a large block starts, past a page boundary. Not 0: the kernel
/// copies records to and from socket buffers that start on pages, and the
/// engine keeps its own buffers in step with those (src/engine/io.rs);
/// rustls' copies between them and these blocks then run at a distance of
/// at least 64 bytes, whichever record of a read or a write they are.
pub const BLOCK_OFFSET: usize = 128;

/// Blocks of a page or more, BLOCK_OFFSET past a page boundary; everything
/// else as the system allocator has it.
pub struct PageAligned;

/// The block System holds for a large `layout`: a page more, page-aligned.
/// None for small blocks, and for alignments BLOCK_OFFSET does not keep.
fn widened(layout: Layout) -> Option<Layout> {
    if layout.size() < PAGE || !BLOCK_OFFSET.is_multiple_of(layout.align()) {
        return None;
    }
    Layout::from_size_align(layout.size().checked_add(BLOCK_OFFSET)?, PAGE).ok()
}

// SAFETY: a large block is System's page-aligned block of the widened
// layout, handed out BLOCK_OFFSET bytes in (a multiple of the caller's
// alignment, within the block), and given back to System from the same
// base with the same layout, derived from the caller's layout alone. A
// block is wiped over the caller's layout only, which it owns whole.
unsafe impl GlobalAlloc for PageAligned {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match widened(layout) {
            Some(wide) => offset(System.alloc(wide)),
            None => System.alloc(layout),
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match widened(layout) {
            Some(wide) => offset(System.alloc_zeroed(wide)),
            None => System.alloc_zeroed(layout),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        wipe(ptr, layout.size());
        match widened(layout) {
            Some(wide) => System.dealloc(ptr.sub(BLOCK_OFFSET), wide),
            None => System.dealloc(ptr, layout),
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        // System's realloc may move the block and free the old one as it
        // is: when wiping, the move is ours.
        if widened(layout).is_none() && widened(new).is_none() && !WIPE.load(Ordering::Relaxed) {
            return System.realloc(ptr, layout, new_size);
        }
        let fresh = self.alloc(new);
        if !fresh.is_null() {
            std::ptr::copy_nonoverlapping(ptr, fresh, layout.size().min(new_size));
            self.dealloc(ptr, layout);
        }
        fresh
    }
}

/// A block's address for the caller: BLOCK_OFFSET into System's block.
///
/// # Safety
/// `base` is null or a block of System's widened layout, which is longer
/// than BLOCK_OFFSET.
unsafe fn offset(base: *mut u8) -> *mut u8 {
    if base.is_null() {
        base
    } else {
        base.add(BLOCK_OFFSET)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_blocks_start_at_the_offset_small_ones_where_malloc_puts_them() {
        let a = PageAligned;
        for size in [4096, 16384 + 22, 70000, 200_000] {
            let layout = Layout::from_size_align(size, 1).unwrap();
            // SAFETY: a non-zero layout, freed below with the same layout.
            unsafe {
                let p = a.alloc(layout);
                assert!(!p.is_null());
                assert_eq!(p as usize % PAGE, BLOCK_OFFSET, "size {size}");
                p.write_bytes(1, size);
                let q = a.realloc(p, layout, size * 2);
                assert_eq!(q as usize % PAGE, BLOCK_OFFSET, "grown from {size}");
                assert_eq!(*q.add(size - 1), 1);
                a.dealloc(q, Layout::from_size_align(size * 2, 1).unwrap());
            }
        }
        // Growing across the threshold keeps the bytes and gains the page.
        let small = Layout::from_size_align(100, 1).unwrap();
        // SAFETY: as above.
        unsafe {
            let p = a.alloc(small);
            p.write_bytes(7, 100);
            let q = a.realloc(p, small, 8192);
            assert_eq!(q as usize % PAGE, BLOCK_OFFSET);
            assert_eq!(*q.add(99), 7);
            a.dealloc(q, Layout::from_size_align(8192, 1).unwrap());
        }
    }
}
