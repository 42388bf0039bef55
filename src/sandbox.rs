//! Confinement (hardening, not in upstream), for the two processes of a
//! connection.
//!
//! The engine: once root is dropped, the trust anchors read and the
//! descriptors taken, it needs nothing but to relay between the fds it
//! holds, and to ask the key holder over its socket. From then on a
//! seccomp-bpf filter (the models: OpenSSH's sandbox, OpenBSD's pledge)
//! answers EPERM to every system call but the few the relay and the crypto
//! use: no file is opened, no program run, no socket made or connected, no
//! process traced or signalled, no memory made executable; wait4 only for
//! the key holder. no_new_privs is set first (the kernel requires it of an
//! unprivileged filter).
//!
//! The key holder (src/holder/): tighter still, since all it does once its
//! files are read is answer on its socket: read and write on that one
//! descriptor, memory without exec rights, getrandom (aws-lc reseeds), exit.
//! Anything else kills it: the engine then sees its socket close and ends
//! the handshake (exit 111).
//!
//! The allow-lists were measured, not guessed: `strace -f` over the whole
//! test suite, every system call an engine or a holder made after
//! seccomp(2). A few calls that the suite never reaches are kept in the
//! engine's because refusing them would turn a rare path (a reseed, a
//! crash, an odd clock source) into a hang or a worse crash; each says why.
//!
//! Confinement fails closed: on x86_64, where the filters exist, a filter
//! that cannot be installed (a kernel without seccomp filters, an outer
//! sandbox that refuses them) is a start-up error, exit 111, naming the
//! call and the reason. `S6_TLSD_IO_NO_SANDBOX` (see OPT_OUT) opts out, for
//! systems where a filter gets in the way; main and the holder then skip
//! confinement. Elsewhere the engine warns at `-v 2` and runs unconfined.

use crate::error::Error;
use crate::log::Log;

/// Set to anything but the empty string or `0`: no confinement.
pub const OPT_OUT: &str = "S6_TLSD_IO_NO_SANDBOX";

/// Whether the environment value of OPT_OUT asks for no confinement.
pub fn opted_out(value: Option<&std::ffi::OsStr>) -> bool {
    value.is_some_and(|v| !v.is_empty() && v != "0")
}

/// Confines the engine for good; nothing undoes it. `holder` is the key
/// holder's pid, the one process it may reap.
pub fn confine(log: &Log, holder: Option<u32>) -> Result<(), Error> {
    // aws-lc sets its RNG up on first use: fork detection (mmap +
    // madvise(MADV_WIPEONFORK)), VM-clone detection (stat and open of
    // /dev/sysgenid), /dev/urandom on kernels without getrandom(2). Done
    // now, while that is still possible; reseeding needs only getrandom(2).
    let _ = aws_lc_rs::rand::fill(&mut [0u8; 1]);
    imp::confine(log, holder)
}

/// Confines the key holder for good: `socket` is the one descriptor it
/// may read and write.
pub fn confine_holder(socket: i32) -> Result<(), Error> {
    let _ = aws_lc_rs::rand::fill(&mut [0u8; 1]);
    imp::confine_holder(socket)
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    use super::*;

    pub fn confine(log: &Log, _holder: Option<u32>) -> Result<(), Error> {
        log.warn(format_args!(
            "no seccomp filter for this architecture, running unconfined"
        ));
        Ok(())
    }

    /// The engine has said it already.
    pub fn confine_holder(_socket: i32) -> Result<(), Error> {
        Ok(())
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use super::*;
    use libc::sock_filter;
    use nix::errno::Errno;

    /// EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE (linux/audit.h).
    const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
    /// x32 system calls share x86_64's audit arch; their numbers have this bit.
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;

    /// Offsets in `struct seccomp_data`. Arguments are compared by their
    /// low 32 bits (little-endian): all the kernel reads of an int.
    const NR: u32 = 0;
    const ARCH: u32 = 4;
    const fn arg(i: u32) -> u32 {
        16 + 8 * i
    }

    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const DENY: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    /// Another ABI's system call (int 0x80, x32) is never ours: an attack.
    const KILL: u32 = libc::SECCOMP_RET_KILL_PROCESS;

    const FUTEX_WAIT_PRIVATE: u32 = (libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG) as u32;
    const FUTEX_WAKE_PRIVATE: u32 = (libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG) as u32;
    const FUTEX_WAIT_BITSET_PRIVATE: u32 =
        (libc::FUTEX_WAIT_BITSET | libc::FUTEX_PRIVATE_FLAG) as u32;

    /// The key holder's calls allowed whatever their arguments, besides
    /// read and write on its socket and mmap.
    const HOLDER_ALWAYS: &[libc::c_long] = &[
        libc::SYS_brk,
        libc::SYS_munmap,
        libc::SYS_getrandom,
        libc::SYS_exit_group,
    ];

    /// The engine's calls allowed whatever their arguments.
    const ALWAYS: &[libc::c_long] = &[
        // Measured: the relay (engine/, notify.rs, log.rs), ends shut down
        // and closed, malloc (brk; the relay's 64 KiB buffers are mapped,
        // so freeing them is munmap). writev is glibc's: the message it
        // prints before it aborts on a corrupted heap (__libc_message).
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_writev,
        libc::SYS_poll,
        libc::SYS_shutdown,
        libc::SYS_close,
        libc::SYS_brk,
        libc::SYS_munmap,
        libc::SYS_exit_group,
        // A poll(2) interrupted by SIGSTOP/SIGCONT (job control, strace -p)
        // resumes through restart_syscall: without it, exit 111.
        libc::SYS_restart_syscall,
        // Kept: aws-lc reseeds from getrandom(2), and aborts if it cannot.
        libc::SYS_getrandom,
        // Kept: Instant::now and SystemTime::now (certificate validity)
        // panic if this fails, and the vDSO falls back to the system call
        // on clock sources it cannot read (some hypervisors).
        libc::SYS_clock_gettime,
        // Kept: the crash paths. abort() (panic=abort) unblocks SIGABRT and
        // raises it, which is tgkill(getpid(), gettid(), SIGABRT) (tgkill
        // is checked below), and resets the action if a handler returned.
        // (No SIGSEGV handler: main is C's, so a fault kills at once.)
        libc::SYS_rt_sigreturn,
        libc::SYS_rt_sigaction,
        libc::SYS_rt_sigprocmask,
        libc::SYS_getpid,
        libc::SYS_gettid,
    ];

    pub fn confine(_log: &Log, holder: Option<u32>) -> Result<(), Error> {
        install(&filter(std::process::id(), holder))
    }

    pub fn confine_holder(socket: i32) -> Result<(), Error> {
        install(&holder_filter(socket as u32))
    }

    /// no_new_privs, then the filter; any failure is the caller's error
    /// (exit 111): a kernel without the facility (ENOSYS, EINVAL) or an
    /// outer sandbox that refuses it (EPERM) alike, since running
    /// unconfined is what the filter is there to prevent.
    fn install(filter: &[sock_filter]) -> Result<(), Error> {
        let failed =
            |what: &str, errno| Err(Error::errno(format!("confine the process: {what}"), errno));
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return failed("prctl(PR_SET_NO_NEW_PRIVS)", Errno::last());
        }
        let prog = libc::sock_fprog {
            len: filter.len() as libc::c_ushort,
            filter: filter.as_ptr().cast_mut(),
        };
        // SAFETY: `prog` points to `filter`, alive for the whole call; the
        // kernel copies the program and never writes to it.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                libc::SECCOMP_FILTER_FLAG_TSYNC,
                &prog as *const libc::sock_fprog,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let errno = Errno::last();
        if errno != Errno::ENOSYS {
            return failed("seccomp", errno);
        }
        // Linux 3.5 to 3.16: filters, but no seccomp(2) yet.
        // SAFETY: as above.
        let r = unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const libc::sock_fprog,
            )
        };
        if r == 0 {
            return Ok(());
        }
        failed("prctl(PR_SET_SECCOMP)", Errno::last())
    }

    /// Where a comparison goes: on to the instruction `n` past the next
    /// one, or to one of the returns every program ends with (`assemble`),
    /// which all its rules share.
    #[derive(Clone, Copy)]
    enum To {
        Skip(u8),
        Allow,
        Refuse,
        Kill,
    }

    const NEXT: To = To::Skip(0);

    /// An instruction whose jumps are not yet resolved.
    #[derive(Clone, Copy)]
    enum Op {
        /// A = the 32-bit word at this offset of `struct seccomp_data`.
        Load(u32),
        /// A `code` comparison of A with `k`: `yes` if it holds.
        Test { code: u32, k: u32, yes: To, no: To },
    }

    fn jeq(k: u32, yes: To, no: To) -> Op {
        let code = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
        Op::Test { code, k, yes, no }
    }

    fn jge(k: u32, yes: To, no: To) -> Op {
        let code = libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K;
        Op::Test { code, k, yes, no }
    }

    /// Allowed if the argument at `arg_offset` is one of `values`.
    fn one_of(arg_offset: u32, values: &[u32]) -> Vec<Op> {
        let last = values.len().saturating_sub(1);
        let mut body = vec![Op::Load(arg_offset)];
        for (i, &v) in values.iter().enumerate() {
            body.push(jeq(v, To::Allow, if i == last { To::Refuse } else { NEXT }));
        }
        body
    }

    /// Allowed if the mapping is never executable.
    fn no_exec() -> Vec<Op> {
        let code = libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K;
        let k = libc::PROT_EXEC as u32;
        vec![
            Op::Load(arg(2)),
            Op::Test {
                code,
                k,
                yes: To::Refuse,
                no: To::Allow,
            },
        ]
    }

    /// A rule: the system call number, and what decides whether it is
    /// allowed (nothing: it always is).
    type Rule = (libc::c_long, Vec<Op>);

    /// Rules a search narrows down to before it compares them one by one.
    const CHAIN: usize = 8;

    /// The whole program: another ABI's call killed, then the rules, then
    /// the returns they share; a number no rule names is `refuse`d.
    ///
    /// Installing a filter costs each process of every connection tens of
    /// microseconds: a fixed part, a part that grows with the instructions
    /// (the kernel converts and compiles the program) and a part that
    /// grows with how far an average number walks (it runs the program for
    /// every system call number to fill its action cache). Hence one return
    /// of each kind that every rule jumps to, and a binary search down to
    /// chains of a few rules. Measured here (Intel Xeon, kernel 6.18), the
    /// median of seccomp(2) itself over 300 installs: the engine's 81
    /// instructions (a return per rule, two chains of 13) 61 us, its 51
    /// now 55 us; the holder's 35 instructions 49 us, its 23 now 47 us.
    /// The fixed part dominates: a program of 3 instructions costs 17 us.
    fn program(rules: &[Rule], refuse: u32) -> Vec<sock_filter> {
        let mut rules = rules.to_vec();
        rules.sort_by_key(|r| r.0);
        let mut ops = vec![
            Op::Load(ARCH),
            jeq(AUDIT_ARCH_X86_64, NEXT, To::Kill),
            Op::Load(NR),
            jge(X32_SYSCALL_BIT, To::Kill, NEXT),
        ];
        ops.extend(search(&rules));
        assemble(&ops, refuse)
    }

    /// `rules`, sorted by number, with the number in A: one comparison per
    /// level down to a chain, whose last mismatch is the refusal.
    fn search(rules: &[Rule]) -> Vec<Op> {
        if rules.len() > CHAIN {
            let (low, high) = rules.split_at(rules.len() / 2);
            let (first, low, high) = (high[0].0 as u32, search(low), search(high));
            let mut ops = vec![jge(first, To::Skip(low.len() as u8), NEXT)];
            ops.extend(low);
            ops.extend(high);
            return ops;
        }
        let mut ops = Vec::new();
        for (i, (nr, body)) in rules.iter().enumerate() {
            let (nr, last) = (*nr as u32, i + 1 == rules.len());
            let no = if last {
                To::Refuse
            } else {
                To::Skip(body.len() as u8)
            };
            match body.len() {
                0 => ops.push(jeq(nr, To::Allow, no)),
                _ => ops.push(jeq(nr, NEXT, no)),
            }
            ops.extend_from_slice(body);
        }
        ops
    }

    /// `ops`, then the returns they jump to, in this order: refuse, allow,
    /// kill. cBPF jumps forward by at most 255 instructions: far more than
    /// either program (the tests bound their lengths).
    fn assemble(ops: &[Op], refuse: u32) -> Vec<sock_filter> {
        let end = ops.len();
        let target = |at: usize, to: To| -> u8 {
            let index = match to {
                To::Skip(n) => return n,
                To::Refuse => end,
                To::Allow => end + 1,
                To::Kill => end + 2,
            };
            (index - at - 1) as u8
        };
        let instruction = |code: u32, jt, jf, k| sock_filter {
            code: code as u16,
            jt,
            jf,
            k,
        };
        let mut out: Vec<sock_filter> = ops
            .iter()
            .enumerate()
            .map(|(at, op)| match *op {
                Op::Load(offset) => {
                    instruction(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, offset)
                }
                Op::Test { code, k, yes, no } => {
                    instruction(code, target(at, yes), target(at, no), k)
                }
            })
            .collect();
        out.extend(
            [refuse, ALLOW, KILL]
                .map(|action| instruction(libc::BPF_RET | libc::BPF_K, 0, 0, action)),
        );
        out
    }

    /// The engine's rules. `pid` is the process's own: tgkill may only send
    /// SIGABRT to ourselves; `holder`, the key holder's, the one process
    /// wait4 may reap.
    fn rules(pid: u32, holder: Option<u32>) -> Vec<Rule> {
        let mut rules: Vec<Rule> = ALWAYS.iter().map(|&nr| (nr, Vec::new())).collect();
        // Measured: engine::run sets the four fds non-blocking (F_GETFL,
        // F_SETFL); debug builds check each fd before closing it (F_GETFD).
        // No F_DUPFD, no F_SETOWN, no locks, no leases.
        let fcntl = [libc::F_GETFL, libc::F_SETFL, libc::F_GETFD].map(|c| c as u32);
        rules.push((libc::SYS_fcntl, one_of(arg(1), &fcntl)));
        // Kept: once the connection has been quiet for a while, the engine
        // hands back the pages it no longer needs (engine/io.rs,
        // `release_idle_memory`; engine/mod.rs, `release_idle`), and
        // malloc_trim the free ones of the heap. MADV_DONTNEED only: pages
        // of the process's own, which read back as zeros.
        let dontneed = [libc::MADV_DONTNEED as u32];
        rules.push((libc::SYS_madvise, one_of(arg(2), &dontneed)));
        // Measured: glibc's pthread_once (aws-lc's lazy set-ups during the
        // handshake) always ends with FUTEX_WAKE, and aborts the process if
        // that fails. The waits are kept for locks. Private wait and wake
        // only: no requeue, no priority inheritance, no shared futexes.
        let futex = [
            FUTEX_WAKE_PRIVATE,
            FUTEX_WAIT_PRIVATE,
            FUTEX_WAIT_BITSET_PRIVATE,
        ];
        rules.push((libc::SYS_futex, one_of(arg(1), &futex)));
        // Kept: malloc maps large blocks, and falls back to mmap when brk
        // cannot grow. Never executable; and no mprotect at all.
        rules.push((libc::SYS_mmap, no_exec()));
        // Measured: once the handshake is done, the engine reaps the key
        // holder (holder/ask.rs), so that no zombie waits while it relays.
        if let Some(holder) = holder {
            rules.push((libc::SYS_wait4, one_of(arg(0), &[holder])));
        }
        // Kept: abort() raises SIGABRT with tgkill(getpid(), gettid(), ...).
        let abort_only = vec![
            Op::Load(arg(0)),
            jeq(pid, NEXT, To::Refuse),
            Op::Load(arg(2)),
            jeq(libc::SIGABRT as u32, To::Allow, To::Refuse),
        ];
        rules.push((libc::SYS_tgkill, abort_only));
        rules
    }

    /// The engine's program: a call no rule names gets EPERM.
    pub fn filter(pid: u32, holder: Option<u32>) -> Vec<sock_filter> {
        program(&rules(pid, holder), DENY)
    }

    /// The key holder's program: short (it is installed once per
    /// connection, at a cost that grows with its length), and anything not
    /// on it kills the process. Measured (strace -f over the tests): the
    /// answers on its socket, malloc's brk, mmap and munmap (aws-lc's and
    /// ours), getrandom (aws-lc's reseeds), the FUTEX_WAKE that ends every
    /// pthread_once (aws-lc's lazy set-ups, as the first signature with a
    /// key type makes them; glibc aborts if it fails), exit.
    pub fn holder_filter(socket: u32) -> Vec<sock_filter> {
        let mut rules: Vec<Rule> = vec![
            (libc::SYS_read, one_of(arg(0), &[socket])),
            (libc::SYS_write, one_of(arg(0), &[socket])),
            (libc::SYS_mmap, no_exec()),
            (libc::SYS_futex, one_of(arg(1), &[FUTEX_WAKE_PRIVATE])),
        ];
        rules.extend(HOLDER_ALWAYS.iter().map(|&nr| (nr, Vec::new())));
        program(&rules, KILL)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// A tiny classic-BPF interpreter, enough for this program: every
        /// rule is checked without a kernel, and so is every jump target.
        fn run(f: &[sock_filter], nr: libc::c_long, arch: u32, args: [u64; 6]) -> u32 {
            let mut data = [0u8; 64];
            data[0..4].copy_from_slice(&(nr as u32).to_le_bytes());
            data[4..8].copy_from_slice(&arch.to_le_bytes());
            for (i, a) in args.iter().enumerate() {
                data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
            }
            let (mut pc, mut a) = (0usize, 0u32);
            loop {
                let ins = f[pc];
                let code = u32::from(ins.code);
                pc += 1;
                match code {
                    c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                        let k = ins.k as usize;
                        a = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
                    }
                    c if c == libc::BPF_RET | libc::BPF_K => return ins.k,
                    c => {
                        let taken = match c & 0xf0 {
                            x if x == libc::BPF_JEQ => a == ins.k,
                            x if x == libc::BPF_JGE => a >= ins.k,
                            x if x == libc::BPF_JGT => a > ins.k,
                            x if x == libc::BPF_JSET => a & ins.k != 0,
                            _ => panic!("unexpected opcode {c:#x}"),
                        };
                        pc += usize::from(if taken { ins.jt } else { ins.jf });
                    }
                }
                assert!(pc < f.len(), "jump past the end");
            }
        }

        #[test]
        fn allows_the_relay_and_denies_the_rest() {
            let f = filter(4242, Some(4300));
            assert!(f.len() < 60, "{} instructions", f.len());
            let x = AUDIT_ARCH_X86_64;
            let call = |nr, args| run(&f, nr, x, args);
            let none = [0; 6];
            for nr in ALWAYS {
                assert_eq!(call(*nr, none), ALLOW, "syscall {nr}");
            }
            for nr in [
                libc::SYS_open,
                libc::SYS_openat,
                libc::SYS_openat2,
                libc::SYS_execve,
                libc::SYS_execveat,
                libc::SYS_socket,
                libc::SYS_connect,
                libc::SYS_ptrace,
                libc::SYS_mprotect,
                libc::SYS_kill,
                libc::SYS_fork,
                libc::SYS_clone,
                libc::SYS_clone3,
                libc::SYS_sendmsg,
                libc::SYS_ioctl,
                libc::SYS_prctl,
                libc::SYS_seccomp,
            ] {
                assert_eq!(call(nr, none), DENY, "syscall {nr}");
            }
            let fcntl = |cmd: i32| call(libc::SYS_fcntl, [0, cmd as u64, 0, 0, 0, 0]);
            assert_eq!(fcntl(libc::F_GETFL), ALLOW);
            assert_eq!(fcntl(libc::F_SETFL), ALLOW);
            assert_eq!(fcntl(libc::F_GETFD), ALLOW);
            assert_eq!(fcntl(libc::F_DUPFD), DENY);
            assert_eq!(fcntl(libc::F_DUPFD_CLOEXEC), DENY);
            assert_eq!(fcntl(libc::F_SETOWN), DENY);
            let futex = |op: u32| call(libc::SYS_futex, [0, op.into(), 0, 0, 0, 0]);
            assert_eq!(futex(FUTEX_WAKE_PRIVATE), ALLOW);
            assert_eq!(futex(FUTEX_WAIT_PRIVATE), ALLOW);
            assert_eq!(futex(libc::FUTEX_WAKE as u32), DENY);
            assert_eq!(futex(libc::FUTEX_CMP_REQUEUE_PI as u32 | 128), DENY);
            let rw = (libc::PROT_READ | libc::PROT_WRITE) as u64;
            let mmap = |prot| call(libc::SYS_mmap, [0, 4096, prot, 0x22, u64::MAX, 0]);
            assert_eq!(mmap(rw), ALLOW);
            assert_eq!(mmap(rw | libc::PROT_EXEC as u64), DENY);
            assert_eq!(mmap(libc::PROT_EXEC as u64), DENY);
            let abrt = libc::SIGABRT as u64;
            let tgkill = |pid, sig| call(libc::SYS_tgkill, [pid, 4243, sig, 0, 0, 0]);
            assert_eq!(tgkill(4242, abrt), ALLOW);
            assert_eq!(tgkill(4242, libc::SIGKILL as u64), DENY);
            assert_eq!(tgkill(1, abrt), DENY);
            let wait4 = |pid| call(libc::SYS_wait4, [pid, 0, 0, 0, 0, 0]);
            assert_eq!(wait4(4300), ALLOW);
            assert_eq!(wait4(u64::MAX), DENY, "any child");
            assert_eq!(wait4(1), DENY);
            assert_eq!(
                run(
                    &filter(4242, None),
                    libc::SYS_wait4,
                    x,
                    [4300, 0, 0, 0, 0, 0]
                ),
                DENY
            );
            // Every number, through both chains and the range check: only
            // the listed calls get through (with arguments all zero, the
            // checked ones are refused but mmap, which maps nothing).
            for nr in 0..1024 {
                let expected = match nr {
                    _ if ALWAYS.contains(&nr) => ALLOW,
                    libc::SYS_mmap => ALLOW,
                    _ => DENY,
                };
                assert_eq!(call(nr, none), expected, "syscall {nr}");
            }
            // Other ABIs are killed, whatever the number.
            let x32_read = libc::SYS_read | X32_SYSCALL_BIT as libc::c_long;
            assert_eq!(call(x32_read, none), KILL);
            const AUDIT_ARCH_I386: u32 = 3 | 0x4000_0000;
            assert_eq!(run(&f, libc::SYS_read, AUDIT_ARCH_I386, none), KILL);
        }

        #[test]
        fn the_holder_may_only_answer_on_its_socket_and_anything_else_kills_it() {
            let f = holder_filter(7);
            assert!(f.len() < 30, "{} instructions", f.len());
            let call = |nr, args| run(&f, nr, AUDIT_ARCH_X86_64, args);
            let on = |fd| [fd, 0, 0, 0, 0, 0];
            for nr in [libc::SYS_read, libc::SYS_write] {
                assert_eq!(call(nr, on(7)), ALLOW, "syscall {nr} on its socket");
                for fd in [0, 1, 2, 6, 8] {
                    assert_eq!(call(nr, on(fd)), KILL, "syscall {nr} on fd {fd}");
                }
            }
            let mmap = |prot| call(libc::SYS_mmap, [0, 4096, prot, 0x22, u64::MAX, 0]);
            assert_eq!(mmap((libc::PROT_READ | libc::PROT_WRITE) as u64), ALLOW);
            assert_eq!(mmap(libc::PROT_EXEC as u64), KILL);
            let futex = |op: u32| call(libc::SYS_futex, [0, op.into(), 0, 0, 0, 0]);
            assert_eq!(futex(FUTEX_WAKE_PRIVATE), ALLOW);
            assert_eq!(futex(FUTEX_WAIT_PRIVATE), KILL);
            for nr in 0..1024 {
                let expected = match nr {
                    _ if HOLDER_ALWAYS.contains(&nr) => ALLOW,
                    libc::SYS_mmap => ALLOW,
                    _ => KILL,
                };
                assert_eq!(call(nr, on(0)), expected, "syscall {nr}");
            }
            let x32_read = libc::SYS_read | X32_SYSCALL_BIT as libc::c_long;
            assert_eq!(call(x32_read, on(7)), KILL);
        }
    }
}
