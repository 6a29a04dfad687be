//! A Landlock ruleset that leaves reading alone and confines writing (creating,
//! removing, renaming, truncating) to one folder and `/dev/null`; on ABI 4 and later it
//! also refuses TCP bind and connect, and on ABI 6 and later signals and abstract Unix
//! sockets that leave the sandbox. Built in the parent; the child only calls
//! `landlock_restrict_self` on it.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const CREATE_RULESET_VERSION: u32 = 1;
const RULE_PATH_BENEATH: libc::c_int = 1;

const WRITE_FILE: u64 = 1 << 1;
const REMOVE_DIR: u64 = 1 << 4;
const REMOVE_FILE: u64 = 1 << 5;
const MAKE_CHAR: u64 = 1 << 6;
const MAKE_DIR: u64 = 1 << 7;
const MAKE_REG: u64 = 1 << 8;
const MAKE_SOCK: u64 = 1 << 9;
const MAKE_FIFO: u64 = 1 << 10;
const MAKE_BLOCK: u64 = 1 << 11;
const MAKE_SYM: u64 = 1 << 12;
const REFER: u64 = 1 << 13;
const TRUNCATE: u64 = 1 << 14;

const NET_BIND_TCP: u64 = 1 << 0;
const NET_CONNECT_TCP: u64 = 1 << 1;
const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
const SCOPE_SIGNAL: u64 = 1 << 1;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

pub struct Ruleset {
    fd: OwnedFd,
}

impl Ruleset {
    pub fn fd(&self) -> libc::c_int {
        self.fd.as_raw_fd()
    }

    /// The kernel's Landlock ABI version, or the errno saying why there is none.
    pub fn abi() -> Result<i64, i32> {
        // SAFETY: the version query takes no attribute.
        let abi = unsafe {
            libc::syscall(libc::SYS_landlock_create_ruleset, std::ptr::null::<u8>(), 0, CREATE_RULESET_VERSION)
        };
        if abi < 0 { Err(errno()) } else { Ok(abi) }
    }

    /// Writes allowed only beneath `dir` (and into /dev/null). Errors are errnos.
    pub fn confining_writes_to(dir: &Path) -> Result<Ruleset, i32> {
        let abi = Self::abi()?;
        let mut writes = WRITE_FILE
            | REMOVE_DIR
            | REMOVE_FILE
            | MAKE_CHAR
            | MAKE_DIR
            | MAKE_REG
            | MAKE_SOCK
            | MAKE_FIFO
            | MAKE_BLOCK
            | MAKE_SYM;
        if abi >= 2 {
            writes |= REFER;
        }
        if abi >= 3 {
            writes |= TRUNCATE;
        }
        let attr = RulesetAttr {
            handled_access_fs: writes,
            handled_access_net: if abi >= 4 { NET_BIND_TCP | NET_CONNECT_TCP } else { 0 },
            scoped: if abi >= 6 { SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL } else { 0 },
        };
        let size = match abi {
            1..=3 => 8,
            4 | 5 => 16,
            _ => std::mem::size_of::<RulesetAttr>(),
        };
        // SAFETY: `attr` is a live ruleset attribute of at least `size` bytes.
        let fd = unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, &attr, size, 0) };
        if fd < 0 {
            return Err(errno());
        }
        // SAFETY: the kernel just returned this descriptor (close-on-exec).
        let ruleset = Ruleset { fd: unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) } };
        ruleset.allow(dir, writes)?;
        let file_rights = WRITE_FILE | if abi >= 3 { TRUNCATE } else { 0 };
        ruleset.allow(Path::new("/dev/null"), file_rights)?;
        Ok(ruleset)
    }

    fn allow(&self, path: &Path, access: u64) -> Result<(), i32> {
        let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| libc::EINVAL)?;
        // SAFETY: opens a path for reference only.
        let parent = unsafe { libc::open(c_path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
        if parent < 0 {
            return Err(errno());
        }
        // SAFETY: the descriptor was just opened.
        let parent = unsafe { OwnedFd::from_raw_fd(parent) };
        let rule = PathBeneathAttr { allowed_access: access, parent_fd: parent.as_raw_fd() };
        // SAFETY: `rule` is a live path-beneath attribute.
        let r = unsafe { libc::syscall(libc::SYS_landlock_add_rule, self.fd(), RULE_PATH_BENEATH, &rule, 0) };
        if r < 0 { Err(errno()) } else { Ok(()) }
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL)
}
