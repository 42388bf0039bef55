//! The heap, with large blocks on page boundaries, so that the relay's
//! copies run at the same speed whatever the heap's layout.
//!
//! rustls copies every record at least once between a buffer of ours and
//! a `Vec` of its own: received plaintext into a fresh `Vec`, application
//! data into the `Vec` it seals in place. glibc's memcpy moves large blocks
//! with `rep movsb`, which some CPUs (AMD Zen 3 measured: 1 GB/s against
//! 15 GB/s) run 15 times slower when the destination is 1 to 63 bytes past
//! the source modulo 4 KiB. With malloc choosing the `Vec`'s address, which
//! case a process hit depended on its heap layout: client-to-application
//! bulk cost twice as much in one harness as in another. A block of 4 KiB
//! or more from here starts on a page boundary, so the engine, which owns
//! the other side of each copy, can place its bytes at a distance that is
//! never in that window (src/engine/io.rs, `Pages` and the record
//! prefix). Small blocks, most of the handshake's, are malloc's as before.

use std::alloc::{GlobalAlloc, Layout, System};

const PAGE: usize = 4096;

/// Blocks of a page or more, page-aligned; everything else as the system
/// allocator has it.
pub struct PageAligned;

fn widen(layout: Layout) -> Layout {
    if layout.size() >= PAGE {
        // A page is a valid alignment, and rounding the size up to it
        // cannot overflow for a size that fits a Layout already.
        layout.align_to(PAGE).unwrap_or(layout)
    } else {
        layout
    }
}

// SAFETY: every block is allocated and freed by System with the same
// widened layout, which is derived from the caller's layout alone; widening
// only raises the alignment, so each block still satisfies the caller's.
unsafe impl GlobalAlloc for PageAligned {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        System.alloc(widen(layout))
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        System.alloc_zeroed(widen(layout))
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, widen(layout))
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = widen(layout);
        let Ok(new) = Layout::from_size_align(new_size, layout.align()).map(widen) else {
            return std::ptr::null_mut();
        };
        if old.align() == new.align() {
            return System.realloc(ptr, old, new_size);
        }
        // Crossing the page threshold changes the alignment: move by hand.
        let fresh = System.alloc(new);
        if !fresh.is_null() {
            std::ptr::copy_nonoverlapping(ptr, fresh, layout.size().min(new_size));
            System.dealloc(ptr, old);
        }
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_blocks_start_on_a_page_small_ones_do_not_have_to() {
        let a = PageAligned;
        for size in [4096, 16384 + 22, 70000, 200_000] {
            let layout = Layout::from_size_align(size, 1).unwrap();
            // SAFETY: a non-zero layout, freed below with the same layout.
            unsafe {
                let p = a.alloc(layout);
                assert!(!p.is_null());
                assert_eq!(p as usize % PAGE, 0, "size {size}");
                let q = a.realloc(p, layout, size * 2);
                assert_eq!(q as usize % PAGE, 0, "grown from {size}");
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
            assert_eq!(q as usize % PAGE, 0);
            assert_eq!(*q.add(99), 7);
            a.dealloc(q, Layout::from_size_align(8192, 1).unwrap());
        }
    }
}
