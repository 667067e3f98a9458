"""A seccomp-BPF system-call filter for untrusted generated programs (Linux x86_64 and aarch64).

Installed by the sandbox child on itself just before the program runs (standard library only, no
libseccomp). Denied with EPERM: creating processes (fork, vfork, clone without CLONE_THREAD, execve),
signalling other processes, sockets and io_uring, changing credentials or resource limits, mounts,
namespaces, ptrace, kernel modules and other administration calls, and deleting, renaming, linking
or re-owning files. ``clone3`` answers ENOSYS so that the C library falls back to ``clone``, whose
flags the filter can inspect (threads stay possible). Any other architecture / ABI is killed.
Numbers come from the kernel's ``asm/unistd_64.h`` (x86_64) and ``asm-generic/unistd.h`` (aarch64).
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct

DENIED = (
    "fork vfork execve execveat kill tkill tgkill rt_sigqueueinfo rt_tgsigqueueinfo pidfd_send_signal pidfd_open "
    "pidfd_getfd socket socketpair io_uring_setup io_uring_enter io_uring_register setrlimit prlimit64 setuid setgid "
    "setreuid setregid setresuid setresgid setfsuid setfsgid setgroups capset ptrace process_vm_readv "
    "process_vm_writev mount umount2 pivot_root chroot unshare setns reboot kexec_load kexec_file_load init_module "
    "finit_module delete_module swapon swapoff sethostname setdomainname bpf perf_event_open keyctl add_key "
    "request_key userfaultfd acct settimeofday clock_settime adjtimex clock_adjtime iopl ioperm quotactl "
    "open_by_handle_at name_to_handle_at syslog vhangup fanotify_init move_mount open_tree fsopen fsmount fsconfig "
    "fspick mount_setattr unlink unlinkat rmdir rename renameat renameat2 link linkat symlink symlinkat chmod fchmod "
    "fchmodat fchmodat2 chown fchown lchown fchownat truncate mknod mknodat"
).split()

SYSCALLS = {
    "x86_64": {
        "fork": 57, "vfork": 58, "execve": 59, "execveat": 322, "clone": 56, "clone3": 435, "kill": 62, "tkill": 200,
        "tgkill": 234, "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297, "pidfd_send_signal": 424, "pidfd_open": 434,
        "pidfd_getfd": 438, "socket": 41, "socketpair": 53, "io_uring_setup": 425, "io_uring_enter": 426,
        "io_uring_register": 427, "setrlimit": 160, "prlimit64": 302, "setuid": 105, "setgid": 106, "setreuid": 113,
        "setregid": 114, "setresuid": 117, "setresgid": 119, "setfsuid": 122, "setfsgid": 123, "setgroups": 116,
        "capset": 126, "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "mount": 165, "umount2": 166,
        "pivot_root": 155, "chroot": 161, "unshare": 272, "setns": 308, "reboot": 169, "kexec_load": 246,
        "kexec_file_load": 320, "init_module": 175, "finit_module": 313, "delete_module": 176, "swapon": 167,
        "swapoff": 168, "sethostname": 170, "setdomainname": 171, "bpf": 321, "perf_event_open": 298, "keyctl": 250,
        "add_key": 248, "request_key": 249, "userfaultfd": 323, "acct": 163, "settimeofday": 164,
        "clock_settime": 227, "adjtimex": 159, "clock_adjtime": 305, "iopl": 172, "ioperm": 173, "quotactl": 179,
        "open_by_handle_at": 304, "name_to_handle_at": 303, "syslog": 103, "vhangup": 153, "fanotify_init": 300,
        "move_mount": 429, "open_tree": 428, "fsopen": 430, "fsmount": 432, "fsconfig": 431, "fspick": 433,
        "mount_setattr": 442, "unlink": 87, "unlinkat": 263, "rmdir": 84, "rename": 82, "renameat": 264,
        "renameat2": 316, "link": 86, "linkat": 265, "symlink": 88, "symlinkat": 266, "chmod": 90, "fchmod": 91,
        "fchmodat": 268, "fchmodat2": 452, "chown": 92, "fchown": 93, "lchown": 94, "fchownat": 260, "truncate": 76,
        "mknod": 133, "mknodat": 259,
    },
    "aarch64": {  # the generic table: no fork/vfork/unlink/rename/… (only their *at variants)
        "execve": 221, "execveat": 281, "clone": 220, "clone3": 435, "kill": 129, "tkill": 130, "tgkill": 131,
        "rt_sigqueueinfo": 138, "rt_tgsigqueueinfo": 240, "pidfd_send_signal": 424, "pidfd_open": 434,
        "pidfd_getfd": 438, "socket": 198, "socketpair": 199, "io_uring_setup": 425, "io_uring_enter": 426,
        "io_uring_register": 427, "setrlimit": 164, "prlimit64": 261, "setuid": 146, "setgid": 144, "setreuid": 145,
        "setregid": 143, "setresuid": 147, "setresgid": 149, "setfsuid": 151, "setfsgid": 152, "setgroups": 159,
        "capset": 91, "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "mount": 40, "umount2": 39,
        "pivot_root": 41, "chroot": 51, "unshare": 97, "setns": 268, "reboot": 142, "kexec_load": 104,
        "kexec_file_load": 294, "init_module": 105, "finit_module": 273, "delete_module": 106, "swapon": 224,
        "swapoff": 225, "sethostname": 161, "setdomainname": 162, "bpf": 280, "perf_event_open": 241, "keyctl": 219,
        "add_key": 217, "request_key": 218, "userfaultfd": 282, "acct": 89, "settimeofday": 170,
        "clock_settime": 112, "adjtimex": 171, "clock_adjtime": 266, "quotactl": 60, "open_by_handle_at": 265,
        "name_to_handle_at": 264, "syslog": 116, "vhangup": 58, "fanotify_init": 262, "move_mount": 429,
        "open_tree": 428, "fsopen": 430, "fsmount": 432, "fsconfig": 431, "fspick": 433, "mount_setattr": 442,
        "unlinkat": 35, "renameat": 38, "renameat2": 276, "linkat": 37, "symlinkat": 36, "fchmod": 52,
        "fchmodat": 53, "fchmodat2": 452, "fchown": 55, "fchownat": 54, "truncate": 45, "mknodat": 33,
    },
}
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}

# BPF opcodes and seccomp constants (linux/filter.h, linux/seccomp.h)
LD_W_ABS, JEQ_K, JGE_K, JSET_K, RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
RET_ALLOW, RET_ERRNO, RET_KILL_PROCESS = 0x7FFF0000, 0x00050000, 0x80000000
NR_OFFSET, ARCH_OFFSET, ARG0_OFFSET = 0, 4, 16  # struct seccomp_data (args[0] low word: little-endian)
X32_SYSCALL_BIT, CLONE_THREAD = 0x40000000, 0x00010000
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def build_filter(arch: str) -> list[bytes]:
    """The BPF program: check the architecture, then one (compare, return) pair per denied call."""
    table = SYSCALLS[arch]
    deny = RET_ERRNO | errno.EPERM
    prog = [_insn(LD_W_ABS, 0, 0, ARCH_OFFSET), _insn(JEQ_K, 1, 0, AUDIT_ARCH[arch]), _insn(RET_K, 0, 0, RET_KILL_PROCESS),
            _insn(LD_W_ABS, 0, 0, NR_OFFSET)]
    if arch == "x86_64":  # the x32 ABI would otherwise bypass the numbers below
        prog += [_insn(JGE_K, 0, 1, X32_SYSCALL_BIT), _insn(RET_K, 0, 0, RET_KILL_PROCESS)]
    for name in DENIED:
        if name in table:
            prog += [_insn(JEQ_K, 0, 1, table[name]), _insn(RET_K, 0, 0, deny)]
    prog += [_insn(JEQ_K, 0, 1, table["clone3"]), _insn(RET_K, 0, 0, RET_ERRNO | errno.ENOSYS)]
    # clone: allowed only for threads (CLONE_THREAD in flags = args[0])
    prog += [_insn(JEQ_K, 0, 4, table["clone"]), _insn(LD_W_ABS, 0, 0, ARG0_OFFSET),
             _insn(JSET_K, 0, 1, CLONE_THREAD), _insn(RET_K, 0, 0, RET_ALLOW), _insn(RET_K, 0, 0, deny)]
    prog.append(_insn(RET_K, 0, 0, RET_ALLOW))
    return prog


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install() -> None:
    """Installs the filter on the calling process (irreversible; inherited by any thread)."""
    arch = platform.machine()
    if arch not in SYSCALLS:
        raise OSError(f"seccomp filter not available for architecture {arch!r}")
    prog = b"".join(build_filter(arch))
    buf = ctypes.create_string_buffer(prog, len(prog))
    fprog = _SockFprog(len(prog) // 8, ctypes.cast(buf, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")
