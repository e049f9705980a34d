//! Device rules: which device nodes a sandbox may create and open.
//!
//! A sandbox keeps `CAP_MKNOD` (Docker's default capability set), and the overlay rootfs is
//! not `nodev`, so without rules a RUN step could `mknod /x b 7 0` and read a host block
//! device, or an image could ship such a node. As Docker, every non-privileged sandbox gets a
//! device cgroup that denies everything but [`DEFAULT_ALLOWED`] and the `--device` mappings
//! ([`crate::DeviceMapping`]); privileged sandboxes get none (all devices, as
//! `docker run --privileged`).
//!
//! The list is moby's `oci/defaults.go` (`linux.resources.devices` = one `deny a *:* rwm`)
//! followed by the rules runc appends to every container (`AllowedDevices` in runc's
//! `libcontainer/specconv/spec_linux.go`, runc 1.2+): mknod of any node, rwm on null, zero,
//! full, random, urandom, tty, the pts devices, ptmx and tun.
//!
//! Two mechanisms, chosen in `cgroup.rs`:
//! - cgroup v1: the `devices` controller; `a` is written to `devices.deny` (a new cgroup
//!   inherits its parent's list), then one line per rule to `devices.allow` ([`v1_line`]).
//! - cgroup v2: a `BPF_PROG_TYPE_CGROUP_DEVICE` program ([`program`]) attached to the
//!   sandbox's cgroup with `BPF_F_ALLOW_MULTI` (so a program of an ancestor, e.g. the one of
//!   the container kiln runs in, still applies). The instruction sequence is runc's device
//!   filter (`devicefilter.go`, in runc's `libcontainer/cgroups/devices` up to 1.2, now in
//!   the `opencontainers/cgroups` module; youki's `libcgroups/src/v2/devices/program.rs`
//!   emits the same): load type, access, major and minor from `struct bpf_cgroup_dev_ctx`,
//!   one block per rule that jumps to the next block on a mismatch and returns 1 on a match,
//!   and 0 at the end. The program is a few dozen fixed instructions, so we emit them
//!   ourselves and load and attach them with two `bpf(2)` calls through `libc`: the crates
//!   that do this (youki uses `libbpf-sys`, which builds and links the C libbpf; `aya` is made
//!   for compiled eBPF objects and maps) bring far more than two system calls need. The
//!   program goes away with the cgroup.

use serde::{Deserialize, Serialize};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// `mknod` access (as in `BPF_DEVCG_ACC_*`).
pub(crate) const MKNOD: u8 = 1;
/// `open` for reading.
pub(crate) const READ: u8 = 2;
/// `open` for writing.
pub(crate) const WRITE: u8 = 4;
const RWM: u8 = MKNOD | READ | WRITE;

/// One allow rule: `TYPE MAJOR:MINOR ACCESS`, `None` being `*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DeviceRule {
    /// `'c'` or `'b'`.
    pub(crate) kind: char,
    pub(crate) major: Option<u32>,
    pub(crate) minor: Option<u32>,
    /// [`MKNOD`] | [`READ`] | [`WRITE`].
    pub(crate) access: u8,
}

const fn rule(kind: char, major: Option<u32>, minor: Option<u32>, access: u8) -> DeviceRule {
    DeviceRule {
        kind,
        major,
        minor,
        access,
    }
}

/// Docker's default allow list (see the module docs for its sources).
pub(crate) const DEFAULT_ALLOWED: &[DeviceRule] = &[
    // mknod of any device (opening it is another matter).
    rule('c', None, None, MKNOD),
    rule('b', None, None, MKNOD),
    rule('c', Some(1), Some(3), RWM),    // null
    rule('c', Some(1), Some(8), RWM),    // random
    rule('c', Some(1), Some(7), RWM),    // full
    rule('c', Some(5), Some(0), RWM),    // tty
    rule('c', Some(1), Some(5), RWM),    // zero
    rule('c', Some(1), Some(9), RWM),    // urandom
    rule('c', Some(136), None, RWM),     // pts/*
    rule('c', Some(5), Some(2), RWM),    // ptmx
    rule('c', Some(10), Some(200), RWM), // net/tun
];

/// `rwm` and its subsets (each letter at most once) as access bits; `None` when invalid.
pub(crate) fn parse_access(s: &str) -> Option<u8> {
    if s.is_empty() {
        return None;
    }
    let mut bits = 0;
    for c in s.chars() {
        let b = match c {
            'r' => READ,
            'w' => WRITE,
            'm' => MKNOD,
            _ => return None,
        };
        if bits & b != 0 {
            return None;
        }
        bits |= b;
    }
    Some(bits)
}

/// Access bits as `rwm` letters.
pub(crate) fn access_string(access: u8) -> String {
    [(READ, 'r'), (WRITE, 'w'), (MKNOD, 'm')]
        .iter()
        .filter(|(b, _)| access & b != 0)
        .map(|(_, c)| *c)
        .collect()
}

/// The line for `devices.allow` (cgroup v1), e.g. `c 136:* rwm`.
pub(crate) fn v1_line(r: &DeviceRule) -> String {
    let num = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
    format!(
        "{} {}:{} {}",
        r.kind,
        num(r.major),
        num(r.minor),
        access_string(r.access)
    )
}

/// The rule allowing `access` on the device node at `host` (a `--device` source).
pub(crate) fn rule_for_node(host: &Path, access: u8) -> io::Result<DeviceRule> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let m = std::fs::metadata(host)?;
    let kind = if m.file_type().is_char_device() {
        'c'
    } else if m.file_type().is_block_device() {
        'b'
    } else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a device node",
        ));
    };
    let rdev = m.rdev();
    Ok(rule(
        kind,
        Some(libc::major(rdev)),
        Some(libc::minor(rdev)),
        access,
    ))
}

// The BPF instruction set, as much of it as the program needs (linux/bpf_common.h, bpf.h).
const BPF_LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const BPF_ALU32_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const BPF_ALU32_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const BPF_ALU32_MOV_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const BPF_ALU64_MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const BPF_JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const BPF_JNE_X: u8 = 0x5d; // BPF_JMP | BPF_JNE | BPF_X
const BPF_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

/// `struct bpf_insn`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Insn {
    code: u8,
    /// dst_reg in the low nibble, src_reg in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

/// The device program allowing `rules` and nothing else.
///
/// Registers: R1 = `struct bpf_cgroup_dev_ctx *` (`access_type` = access << 16 | type,
/// `major`, `minor`), R2 = type (`BPF_DEVCG_DEV_BLOCK` 1, `_CHAR` 2), R3 = access, R4 =
/// major, R5 = minor.
pub(crate) fn program(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut p = vec![
        insn(BPF_LDX_MEM_W, 2, 1, 0, 0),
        insn(BPF_ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(BPF_LDX_MEM_W, 3, 1, 0, 0),
        insn(BPF_ALU32_RSH_K, 3, 0, 0, 16),
        insn(BPF_LDX_MEM_W, 4, 1, 4, 0),
        insn(BPF_LDX_MEM_W, 5, 1, 8, 0),
    ];
    for r in rules {
        // The block's compare-and-skip instructions; the jump offsets are filled in once
        // the block's length is known (each skips to the next block).
        let mut block: Vec<Insn> = Vec::new();
        block.push(insn(BPF_JNE_K, 2, 0, 0, if r.kind == 'b' { 1 } else { 2 }));
        if r.access & RWM != RWM {
            // if (access & allowed) != access: next block (R1 is free by now).
            block.push(insn(BPF_ALU32_MOV_X, 1, 3, 0, 0));
            block.push(insn(BPF_ALU32_AND_K, 1, 0, 0, i32::from(r.access)));
            block.push(insn(BPF_JNE_X, 1, 3, 0, 0));
        }
        if let Some(major) = r.major {
            block.push(insn(BPF_JNE_K, 4, 0, 0, major as i32));
        }
        if let Some(minor) = r.minor {
            block.push(insn(BPF_JNE_K, 5, 0, 0, minor as i32));
        }
        block.push(insn(BPF_ALU64_MOV_K, 0, 0, 0, 1));
        block.push(insn(BPF_EXIT, 0, 0, 0, 0));
        let len = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.code == BPF_JNE_K || ins.code == BPF_JNE_X {
                ins.off = (len - i - 1) as i16;
            }
        }
        p.extend(block);
    }
    p.push(insn(BPF_ALU64_MOV_K, 0, 0, 0, 0));
    p.push(insn(BPF_EXIT, 0, 0, 0, 0));
    p
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The `BPF_PROG_LOAD` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `BPF_PROG_ATTACH` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// Loads the program for `rules` and attaches it to the cgroup v2 directory `cgroup`.
pub(crate) fn attach_program(cgroup: &Path, rules: &[DeviceRule]) -> io::Result<()> {
    let insns = program(rules);
    let license = c"Apache-2.0";
    let mut name = [0u8; 16];
    name[..11].copy_from_slice(b"kiln_device");
    let load = |log: &mut [u8]| {
        let attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: u32::from(!log.is_empty()),
            log_size: log.len() as u32,
            log_buf: if log.is_empty() {
                0
            } else {
                log.as_mut_ptr() as u64
            },
            prog_name: name,
            expected_attach_type: BPF_CGROUP_DEVICE,
            ..Default::default()
        };
        bpf(BPF_PROG_LOAD, &attr)
    };
    // Without the verifier's log (its full text would not fit a small buffer, and a load
    // whose log does not fit fails with ENOSPC); again with it only to explain a failure.
    let mut fd = load(&mut []);
    if fd
        .as_ref()
        .is_err_and(|e| e.raw_os_error() == Some(libc::EPERM))
    {
        // Kernels before 5.11 charge BPF programs to RLIMIT_MEMLOCK (youki raises it too);
        // raised for the load only, so the sandbox's processes keep the caller's limit.
        let mut old = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        let raised = libc::rlimit {
            rlim_cur: libc::RLIM_INFINITY,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: valid rlimit structs.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_MEMLOCK, &raw mut old) == 0
                && libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const raised) == 0
            {
                fd = load(&mut []);
                libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const old);
            }
        }
    }
    let fd = match fd {
        Ok(fd) => fd,
        Err(e) => {
            let mut log = vec![0u8; 1 << 20];
            let _ = load(&mut log);
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let verifier = String::from_utf8_lossy(&log[..end]);
            let verifier = verifier.trim().lines().last().unwrap_or_default();
            return Err(io::Error::new(
                e.kind(),
                if verifier.is_empty() {
                    format!("loading the device program (bpf BPF_PROG_LOAD): {e}")
                } else {
                    format!("loading the device program (bpf BPF_PROG_LOAD): {e}: {verifier}")
                },
            ));
        }
    };
    // SAFETY: a new fd we own.
    let prog = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
    let dir = std::fs::File::open(cgroup)
        .map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", cgroup.display())))?;
    let attr = ProgAttachAttr {
        target_fd: dir.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..Default::default()
    };
    if let Err(e) = bpf(BPF_PROG_ATTACH, &attr) {
        return Err(io::Error::new(
            e.kind(),
            format!(
                "attaching the device program to {} (bpf BPF_PROG_ATTACH): {e}",
                cgroup.display()
            ),
        ));
    }
    // The attachment holds the program from now on; our fd can go.
    Ok(())
}

/// The bpf(2) command `cmd` with `attr` (one of the `#[repr(C)]` attr structs above, whose
/// pointers must outlive the call): its non-negative result, or the OS error.
fn bpf<T>(cmd: libc::c_long, attr: &T) -> io::Result<i64> {
    // SAFETY: `attr` is a valid, initialised attr of the size passed; the pointers it holds
    // outlive the call (the caller's buffers and instructions).
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_ref::<T>(attr),
            std::mem::size_of::<T>(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_lines_of_the_default_list() {
        let lines: Vec<String> = DEFAULT_ALLOWED.iter().map(v1_line).collect();
        assert_eq!(
            lines,
            [
                "c *:* m",
                "b *:* m",
                "c 1:3 rwm",
                "c 1:8 rwm",
                "c 1:7 rwm",
                "c 5:0 rwm",
                "c 1:5 rwm",
                "c 1:9 rwm",
                "c 136:* rwm",
                "c 5:2 rwm",
                "c 10:200 rwm",
            ]
        );
    }

    #[test]
    fn access_strings() {
        assert_eq!(parse_access("rwm"), Some(RWM));
        assert_eq!(parse_access("mr"), Some(MKNOD | READ));
        assert_eq!(parse_access("w"), Some(WRITE));
        for bad in ["", "rr", "rwx", "RW", "rw m"] {
            assert_eq!(parse_access(bad), None, "{bad:?}");
        }
        assert_eq!(access_string(MKNOD | WRITE), "wm");
    }

    #[test]
    fn program_blocks_skip_to_the_next_rule() {
        let p = program(&[
            rule('c', None, None, MKNOD),
            rule('b', Some(7), Some(0), RWM),
        ]);
        let expect = vec![
            insn(BPF_LDX_MEM_W, 2, 1, 0, 0),
            insn(BPF_ALU32_AND_K, 2, 0, 0, 0xffff),
            insn(BPF_LDX_MEM_W, 3, 1, 0, 0),
            insn(BPF_ALU32_RSH_K, 3, 0, 0, 16),
            insn(BPF_LDX_MEM_W, 4, 1, 4, 0),
            insn(BPF_LDX_MEM_W, 5, 1, 8, 0),
            // c *:* m
            insn(BPF_JNE_K, 2, 0, 5, 2),
            insn(BPF_ALU32_MOV_X, 1, 3, 0, 0),
            insn(BPF_ALU32_AND_K, 1, 0, 0, 1),
            insn(BPF_JNE_X, 1, 3, 2, 0),
            insn(BPF_ALU64_MOV_K, 0, 0, 0, 1),
            insn(BPF_EXIT, 0, 0, 0, 0),
            // b 7:0 rwm
            insn(BPF_JNE_K, 2, 0, 4, 1),
            insn(BPF_JNE_K, 4, 0, 3, 7),
            insn(BPF_JNE_K, 5, 0, 2, 0),
            insn(BPF_ALU64_MOV_K, 0, 0, 0, 1),
            insn(BPF_EXIT, 0, 0, 0, 0),
            // deny
            insn(BPF_ALU64_MOV_K, 0, 0, 0, 0),
            insn(BPF_EXIT, 0, 0, 0, 0),
        ];
        assert_eq!(p, expect);
        assert_eq!(std::mem::size_of::<Insn>(), 8);
    }
}
