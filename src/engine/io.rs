//! The engine's view of its four descriptors and its buffers: ends that
//! shut their direction down, buffers straight from mmap(2), the records
//! from fd 0 and the cleartext for fdw, and the alert of a refusal.

use std::io;
use std::num::NonZeroUsize;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::time::Duration;

use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};

use crate::alloc::BLOCK_OFFSET;

use nix::sys::socket::{shutdown, Shutdown};

/// One direction of a descriptor. Dropping it shuts that direction down
/// before closing, so that the peer sees EOF even when the descriptor is a
/// socket that another fd (0 and 1, or fdr and fdw) still refers to.
pub struct End {
    fd: OwnedFd,
    /// None once abandoned: closed as a process exit would close it.
    how: Option<Shutdown>,
}

impl End {
    pub fn reading(fd: OwnedFd) -> End {
        End {
            fd,
            how: Some(Shutdown::Read),
        }
    }

    pub fn writing(fd: OwnedFd) -> End {
        End {
            fd,
            how: Some(Shutdown::Write),
        }
    }

    pub fn raw(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// Closes without shutdown(2): no FIN that could pass for a clean end.
    pub fn abandon(mut self) {
        self.how = None;
    }
}

impl AsFd for End {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for End {
    fn drop(&mut self) {
        // ENOTSOCK (a pipe) and ENOTCONN (a reset peer) are harmless here:
        // closing the descriptor below is all that is left to do.
        if let Some(how) = self.how {
            let _ = shutdown(self.fd.as_raw_fd(), how);
        }
    }
}

/// A buffer straight from mmap(2): zero pages that become resident only as
/// data lands in them. A 64 KiB buffer from malloc was often carved from the
/// heap and zeroed by calloc, so resident at once: 64 KiB per connection for
/// nothing while it idles (bench/README.md).
pub struct Pages {
    ptr: NonNull<u8>,
    len: usize,
}

impl Pages {
    pub fn new(len: NonZeroUsize) -> nix::Result<Pages> {
        // SAFETY: a fresh private anonymous mapping, no address asked for:
        // it overlaps nothing, and only this value ever refers to it.
        let ptr = unsafe {
            mmap_anonymous(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE,
            )?
        };
        Ok(Pages {
            ptr: ptr.cast(),
            len: len.get(),
        })
    }
}

impl Deref for Pages {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `len` readable bytes (zero-filled by the kernel), owned.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for Pages {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Pages {
    /// Hands the pages back to the kernel: they read as zeros from now on,
    /// and become resident again only as data lands in them.
    pub fn release(&mut self) {
        // SAFETY: the whole mapping made in `new`, which holds nothing the
        // caller still needs (it says so by calling this).
        let _ = unsafe { libc::madvise(self.ptr.as_ptr().cast(), self.len, libc::MADV_DONTNEED) };
    }
}

/// Once the handshake is done, what it used and no longer needs goes back
/// to the kernel, so that an idle connection holds only what the relay
/// uses: the stack pages that the handshake's deep calls (aws-lc, rustls)
/// touched below the current frame, and the heap's free pages.
pub fn release_idle_memory() {
    // How far below the current frame the handshake may have reached; any
    // part of it that is not mapped is the stack's guard gap, where no
    // other mapping can be, and madvise(2) skips it.
    const DEPTH: usize = 512 * 1024;
    let below = (stack_pointer() & !(PAGE - 1)).saturating_sub(PAGE);
    let from = below.saturating_sub(DEPTH);
    // SAFETY: memory below the current frame holds no live data (a page of
    // margin for this frame's own use); MADV_DONTNEED on it only zeroes
    // pages that any later call will write before it reads them.
    unsafe {
        // The trim first: its own calls then reach into pages given back.
        libc::malloc_trim(0);
        libc::madvise(from as *mut libc::c_void, below - from, libc::MADV_DONTNEED);
    }
}

/// Where this thread's stack is in use down to: the stack pointer itself,
/// not a local's address. AddressSanitizer (the fuzz builds, where it
/// detects use after return by default) keeps addressable locals in fake
/// frames on the heap, other frames' among them: the pages below such a
/// local are live, and zeroing them crashed the fuzzer as soon as a
/// handshake completed (fuzz/README.md, "Findings"). Elsewhere than x86_64
/// and aarch64, a local's address: right in every build but a sanitized one.
#[inline(always)]
fn stack_pointer() -> usize {
    let sp: usize;
    // SAFETY: copies the stack pointer register; no memory is touched.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags))
    };
    // SAFETY: as above.
    #[cfg(target_arch = "aarch64")]
    unsafe {
        std::arch::asm!("mov {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags))
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let here = 0u8;
        sp = std::ptr::addr_of!(here) as usize;
    }
    sp
}

impl Drop for Pages {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once; nothing borrows
        // it any more. A failure would leave the mapping: nothing to do.
        let _ = unsafe { munmap(self.ptr.cast(), self.len) };
    }
}

/// The unit of the kernel's memory, and of the copy-speed trap that
/// src/alloc.rs explains.
pub const PAGE: usize = 4096;

/// The size of the relay's buffers: four full TLS records.
pub const CHUNK: NonZeroUsize = match NonZeroUsize::new(64 * 1024) {
    Some(n) => n,
    None => unreachable!(),
};

/// What comes from fd 0 until the ClientHello is in: the ClientHello step
/// takes whole records from it, rustls' Acceptor reads through it (4 KiB
/// at a time, from one read(2) of up to 64 KiB). What follows the hello is
/// then handed to the connection's own buffer (`Incoming`).
pub struct NetInput {
    buf: Pages,
    start: usize,
    end: usize,
}

impl NetInput {
    pub fn new() -> nix::Result<NetInput> {
        Ok(NetInput {
            buf: Pages::new(CHUNK)?,
            start: 0,
            end: 0,
        })
    }

    /// Bytes read from fd 0 that rustls has not taken yet.
    pub fn staged(&self) -> bool {
        self.start < self.end
    }

    /// One read(2) from fd 0 into the staging buffer, behind what is still
    /// staged (the start of a record the ClientHello step waits to have
    /// whole: at most one record, far less than the buffer).
    pub fn fill(&mut self, fd: BorrowedFd) -> nix::Result<usize> {
        let kept = self.end - self.start;
        self.buf.copy_within(self.start..self.end, 0);
        let n = nix::unistd::read(fd, &mut self.buf[kept..])?;
        (self.start, self.end) = (0, kept + n);
        Ok(n)
    }

    /// What is staged, for the ClientHello step to take whole records from.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub fn consume(&mut self, n: usize) {
        self.start += n;
    }

    /// A reader over fd 0 for rustls' `read_tls`.
    pub fn reader<'a>(&'a mut self, fd: BorrowedFd<'a>) -> NetReader<'a> {
        NetReader { fd, input: self }
    }
}

pub struct NetReader<'a> {
    fd: BorrowedFd<'a>,
    input: &'a mut NetInput,
}

impl io::Read for NetReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let input = &mut *self.input;
        if !input.staged() {
            input.fill(self.fd)?;
        }
        let n = out.len().min(input.end - input.start);
        out[..n].copy_from_slice(&input.buf[input.start..input.start + n]);
        input.start += n;
        Ok(n)
    }
}

/// Records from fd 0, where rustls decrypts them in place. A record is
/// placed so that its cleartext starts on a page (`payload_offset` past a
/// page boundary): rustls copies it from there into a page-aligned `Vec`
/// (src/alloc.rs), which then runs at full speed.
pub struct Incoming {
    buf: Pages,
    start: usize,
    end: usize,
}

impl Incoming {
    /// Holds `hello` and `rest` to begin with.
    pub fn new(hello: &[u8], rest: &[u8]) -> nix::Result<Incoming> {
        let size = (2 * CHUNK.get() + 2 * PAGE).max(hello.len() + rest.len() + CHUNK.get());
        let mut buf = Pages::new(NonZeroUsize::new(size).unwrap_or(CHUNK))?;
        let end = hello.len() + rest.len();
        buf[..hello.len()].copy_from_slice(hello);
        buf[hello.len()..end].copy_from_slice(rest);
        Ok(Incoming { buf, start: 0, end })
    }

    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Its pages back to the kernel; only while nothing is pending.
    pub fn release(&mut self) {
        self.buf.release();
    }

    /// Not yet taken by rustls: whole records, maybe the start of one more.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub fn pending_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }

    /// At most what lies within the first `limit` bytes ever held.
    pub fn pending_limited(&mut self, limit: Option<usize>) -> &mut [u8] {
        let end = limit.map_or(self.end, |n| self.end.min(n));
        &mut self.buf[self.start.min(end)..end]
    }

    pub fn consume(&mut self, n: usize) {
        self.start += n;
    }

    /// Room for a read of CHUNK behind what is pending.
    pub fn has_room(&self) -> bool {
        self.end - self.start <= CHUNK.get()
    }

    /// One read(2) from fd 0, of up to CHUNK. A record is placed so that
    /// its cleartext (`payload_offset` past its start) lands at the page
    /// offset of the `Vec` rustls copies it into (src/alloc.rs): that copy
    /// then runs at distance 0, and the records behind it in the same read
    /// at distances rustls' copy takes at full speed too.
    pub fn fill_aligned(&mut self, fd: BorrowedFd, payload_offset: usize) -> nix::Result<usize> {
        let home = (BLOCK_OFFSET + PAGE - payload_offset % PAGE) % PAGE;
        if self.start == self.end {
            (self.start, self.end) = (home, home);
        } else if self.buf.len() - self.end < CHUNK.get() {
            // The pending record moves to `home`, unless that move would be
            // the slow kind of copy itself: then 64 bytes further, which
            // rustls' copy from there still takes at full speed.
            let distance = (home + PAGE - self.start % PAGE) % PAGE;
            let to = if (1..64).contains(&distance) {
                home + 64
            } else {
                home
            };
            let len = self.end - self.start;
            self.buf.copy_within(self.start..self.end, to);
            (self.start, self.end) = (to, to + len);
        }
        let until = self.buf.len().min(self.end + CHUNK.get());
        let n = nix::unistd::read(fd, &mut self.buf[self.end..until])?;
        self.end += n;
        Ok(n)
    }
}

/// Cleartext on its way to fdw, taken from rustls a record at a time and
/// written in one go: one write(2) of up to 64 KiB instead of one per 16 KiB
/// record, which also wakes the application a quarter as often.
pub struct Cleartext {
    buf: Pages,
    start: usize,
    end: usize,
}

impl Cleartext {
    /// `more`: what may come on top of the usual CHUNK (Conn says why).
    pub fn new(more: usize) -> nix::Result<Cleartext> {
        let size = CHUNK.saturating_add(more);
        Ok(Cleartext {
            buf: Pages::new(size)?,
            start: 0,
            end: 0,
        })
    }

    /// Taken from rustls, not yet written.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
    }

    /// Whether one more record should be decrypted: only while it fits in
    /// CHUNK with what waits, so that one write(2) of at most CHUNK (a
    /// pipe's capacity) takes everything, instead of one that fills the
    /// pipe and a second, after a poll(2), for the last record.
    pub fn has_room(&self) -> bool {
        self.end - self.start + (1 << 14) <= CHUNK.get()
    }

    /// Its pages back to the kernel; only while nothing is pending.
    pub fn release(&mut self) {
        if self.start == self.end {
            self.buf.release();
        }
    }

    /// One decrypted record.
    pub fn push(&mut self, record: &[u8]) {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
        if self.buf.len() - self.end < record.len() {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        self.buf[self.end..self.end + record.len()].copy_from_slice(record);
        self.end += record.len();
    }
}

/// A descriptor as a writer, for a refusal's last words.
pub struct FdWriter<'a>(pub BorrowedFd<'a>);

impl io::Write for FdWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(nix::unistd::write(self.0, buf)?)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Gives a failing connection's last words (an alert) a bounded time to
/// leave: `write` returns Ok(0) once nothing is left. Best effort by design:
/// the caller is about to exit with the real error.
pub fn send_last_words(fd: BorrowedFd, mut write: impl FnMut(&mut FdWriter) -> io::Result<usize>) {
    let mut out = FdWriter(fd);
    loop {
        match write(&mut out) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if !wait_writable(fd, Duration::from_secs(1)) {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

fn wait_writable(fd: BorrowedFd, timeout: Duration) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let ms = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    matches!(poll(&mut [PollFd::new(fd, PollFlags::POLLOUT)], ms), Ok(n) if n > 0)
}

/// The raw bytes of a fatal alert record. Only used before any key exists
/// (refusing a ClientHello), where alerts travel in the clear.
pub fn plaintext_alert(description: rustls::AlertDescription) -> [u8; 7] {
    [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, u8::from(description)]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stack pointer is just below this frame's locals (in a build
    /// without sanitizers, where locals are on the stack).
    #[test]
    fn the_stack_pointer_is_below_this_frame() {
        let here = 0u8;
        let local = std::ptr::addr_of!(here) as usize;
        let sp = stack_pointer();
        assert!(
            sp <= local && local - sp < 64 * 1024,
            "sp {sp:#x}, local {local:#x}"
        );
    }
}
