//! `builtin:filesystem`: a filesystem mounted by pairbeatd itself, without forking
//! `ocf:heartbeat:Filesystem`. That agent is a shell script which runs a dozen
//! helpers per operation (blkid, grep, modprobe checks…): 66–104 ms of each
//! failover in the lab's group, where mount(2) of a journalled ext4 takes a few.
//! Its monitor forks every interval, too, on the idle node's CPU budget.
//!
//! - start: the device found (a path, `UUID=…` or `LABEL=…` through udev's
//!   `/dev/disk/by-*` links), the directory created if missing, one mount(2).
//!   Already mounted there: done. Something else mounted there: an error.
//! - stop: every mount at or under the directory unmounted, deepest first. A busy
//!   one (`force_unmount`, default true as Filesystem's) has the processes that
//!   hold it (open files, working or root directory, mapped files, found in
//!   /proc) signalled: TERM for the first half of the stop's timeout, then KILL.
//! - monitor: the device's number found at the directory in
//!   /proc/self/mountinfo. `OCF_CHECK_LEVEL` 10 reads the device's first 4 KiB
//!   with O_DIRECT; 20 writes, syncs and reads back a status file
//!   (`DIRECTORY/.Filesystem_status/HOSTNAME`, Filesystem's name for it).
//!
//! Parameters as Filesystem's (`device`, `directory`, `fstype`, `options`,
//! `force_unmount`), so a resource moves between the two by its `agent` line.
//! What Filesystem does that this does not, refused by `config check` rather than
//! ignored: fsck (`run_fsck`; Filesystem itself skips it for journalling
//! filesystems, the ones a failover pair should use), network and bind mounts
//! (this mounts block devices), clones.
//!
//! This module is the pure part: parameters, mount options, mountinfo lines.
//! `mount` does the I/O.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::builtin::{err, ParamError};

pub mod mount;

/// The parameters the agent accepts (for `config check`'s "unknown parameter").
pub const PARAMS: &[&str] = &["device", "directory", "fstype", "options", "force_unmount"];

/// The block filesystems Filesystem mounts without fsck (its `run_fsck=auto` list),
/// and btrfs, whose fsck does nothing at boot. `config import` offers the built-in
/// (which never runs fsck) for these only.
pub const NO_FSCK: &[&str] = &[
    "ext3", "ext4", "ext4dev", "xfs", "jfs", "reiserfs", "reiser4", "vfat", "fat", "ocfs2", "gfs2", "btrfs",
];

/// Filesystem's parameters that this agent refuses, and why.
const REFUSED: &[(&str, &str)] = &[
    (
        "run_fsck",
        "builtin:filesystem never runs fsck (Filesystem skips it for journalling filesystems too): remove it, or use ocf:heartbeat:Filesystem",
    ),
    (
        "fast_stop",
        "builtin:filesystem signals holders for half the stop's timeout, then kills them: set the stop op's timeout instead",
    ),
    (
        "force_clones",
        "builtin:filesystem is not for cluster filesystems: use ocf:heartbeat:Filesystem",
    ),
    (
        "statusfile_prefix",
        "builtin:filesystem's status file is DIRECTORY/.Filesystem_status/HOSTNAME: remove it",
    ),
];

/// Where the device comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device {
    Path(PathBuf),
    /// `UUID=…`: `/dev/disk/by-uuid/…`.
    Uuid(String),
    /// `LABEL=…`: `/dev/disk/by-label/…`.
    Label(String),
}

impl Device {
    /// The path to open: udev's link for a UUID or label.
    pub fn path(&self) -> PathBuf {
        match self {
            Device::Path(p) => p.clone(),
            Device::Uuid(u) => Path::new("/dev/disk/by-uuid").join(u),
            Device::Label(l) => Path::new("/dev/disk/by-label").join(l),
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Path(p) => write!(f, "{}", p.display()),
            Device::Uuid(u) => write!(f, "UUID={u}"),
            Device::Label(l) => write!(f, "LABEL={l}"),
        }
    }
}

/// A filesystem's parameters, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fs {
    pub device: Device,
    pub directory: PathBuf,
    pub fstype: String,
    /// mount(2)'s flags, from `options`.
    pub flags: Flags,
    /// What the filesystem itself reads (`errors=remount-ro,data=ordered`).
    pub data: String,
    pub force_unmount: bool,
}

/// The generic mount flags `options` can set, by name (mount(8)'s words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags {
    pub read_only: bool,
    pub nosuid: bool,
    pub nodev: bool,
    pub noexec: bool,
    pub sync: bool,
    pub dirsync: bool,
    pub noatime: bool,
    pub nodiratime: bool,
    pub relatime: Option<bool>,
    pub strictatime: bool,
    pub lazytime: bool,
}

/// Splits `options` as mount(8) would: the generic flags, and the rest for the
/// filesystem (which the kernel checks at mount time, and refuses by name).
pub fn options(s: &str) -> Result<(Flags, String), String> {
    let mut f = Flags::default();
    let mut data = Vec::new();
    for o in s.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        match o {
            "ro" => f.read_only = true,
            "rw" => f.read_only = false,
            "nosuid" => f.nosuid = true,
            "suid" => f.nosuid = false,
            "nodev" => f.nodev = true,
            "dev" => f.nodev = false,
            "noexec" => f.noexec = true,
            "exec" => f.noexec = false,
            "sync" => f.sync = true,
            "async" => f.sync = false,
            "dirsync" => f.dirsync = true,
            "noatime" => f.noatime = true,
            "atime" => f.noatime = false,
            "nodiratime" => f.nodiratime = true,
            "diratime" => f.nodiratime = false,
            "relatime" => f.relatime = Some(true),
            "norelatime" => f.relatime = Some(false),
            "strictatime" => f.strictatime = true,
            "nostrictatime" => f.strictatime = false,
            "lazytime" => f.lazytime = true,
            "nolazytime" => f.lazytime = false,
            // fstab's words, which mount(8) does not pass to the kernel either.
            "defaults" | "auto" | "noauto" | "nofail" | "_netdev" | "user" | "nouser" | "users" | "owner" | "group" => {
            }
            o if o.starts_with("x-") || o.starts_with("comment=") => {}
            "bind" | "rbind" | "move" | "remount" | "loop" | "shared" | "private" | "slave" | "unbindable"
            | "rshared" | "rprivate" | "rslave" | "runbindable" => {
                return Err(format!(
                    "`{o}` is not a mount of a block device: builtin:filesystem cannot do it"
                ))
            }
            o if o.starts_with("loop=") => {
                return Err(format!("`{o}`: builtin:filesystem mounts block devices, not files"))
            }
            o => data.push(o),
        }
    }
    Ok((f, data.join(",")))
}

fn truthy(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" | "safe" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// Reads the parameters; every mistake found, not only the first.
pub fn parse(params: &BTreeMap<String, String>) -> Result<Fs, Vec<ParamError>> {
    let mut errors = Vec::new();
    for (name, why) in REFUSED {
        if params.contains_key(*name) {
            errors.push(err(name, format!("`{name}` is not supported"), *why));
        }
    }
    let device = match params.get("device").map(|s| s.trim()) {
        None | Some("") => {
            errors.push(err(
                "device",
                "the filesystem has no `device`",
                "add device = \"/dev/sdb1\" (or \"UUID=…\", \"LABEL=…\") to its params",
            ));
            None
        }
        Some(s) => {
            if let Some(u) = s.strip_prefix("UUID=").or_else(|| s.strip_prefix("-U")) {
                Some(Device::Uuid(u.trim().to_string()))
            } else if let Some(l) = s.strip_prefix("LABEL=").or_else(|| s.strip_prefix("-L")) {
                Some(Device::Label(l.trim().to_string()))
            } else if s.contains(":/") || s.starts_with("//") {
                errors.push(err(
                    "device",
                    format!("`{s}` is a network share"),
                    "builtin:filesystem mounts block devices: use ocf:heartbeat:Filesystem for NFS and CIFS",
                ));
                None
            } else if !s.starts_with('/') {
                errors.push(err(
                    "device",
                    format!("`{s}` is not an absolute path"),
                    "write the device's path, e.g. device = \"/dev/drbd0\"",
                ));
                None
            } else {
                Some(Device::Path(PathBuf::from(s)))
            }
        }
    };
    if let Some(Device::Uuid(v) | Device::Label(v)) = &device {
        if v.is_empty() || v.contains('/') {
            errors.push(err(
                "device",
                format!("`{v}` cannot name a device"),
                "write UUID= or LABEL= followed by what blkid shows",
            ));
        }
    }
    let directory = match params.get("directory").map(|s| s.trim()) {
        None | Some("") => {
            errors.push(err(
                "directory",
                "the filesystem has no `directory`",
                "add directory = \"/srv/data\" to its params",
            ));
            None
        }
        Some(s) if !s.starts_with('/') => {
            errors.push(err(
                "directory",
                format!("`{s}` is not an absolute path"),
                "write the mount point's full path, e.g. directory = \"/srv/data\"",
            ));
            None
        }
        Some(s) if Path::new(s).components().count() < 2 || s.split('/').any(|c| c == "..") => {
            errors.push(err(
                "directory",
                format!("`{s}` cannot be a mount point for the group"),
                "mount it on a directory of its own, e.g. /srv/data",
            ));
            None
        }
        // mountinfo lists the path without a trailing slash.
        Some(s) => Some(PathBuf::from(s.trim_end_matches('/'))),
    };
    let fstype = match params.get("fstype").map(|s| s.trim()) {
        None | Some("") => {
            errors.push(err(
                "fstype",
                "the filesystem has no `fstype`",
                "add fstype = \"ext4\" (or xfs, …) to its params",
            ));
            None
        }
        Some(s)
            if matches!(
                s,
                "nfs" | "nfs4" | "cifs" | "smbfs" | "glusterfs" | "ceph" | "none" | "bind"
            ) =>
        {
            errors.push(err(
                "fstype",
                format!("`{s}` is not a filesystem on a block device"),
                "builtin:filesystem mounts block devices: use ocf:heartbeat:Filesystem",
            ));
            None
        }
        Some(s) if s.contains([',', ' ', '/']) => {
            errors.push(err(
                "fstype",
                format!("`{s}` is not a filesystem type"),
                "write one type, as /proc/filesystems names it, e.g. fstype = \"ext4\"",
            ));
            None
        }
        Some(s) => Some(s.to_string()),
    };
    let (flags, data) = match options(params.get("options").map(String::as_str).unwrap_or("")) {
        Ok(o) => o,
        Err(e) => {
            errors.push(err(
                "options",
                e,
                "write mount options as mount -o takes them, e.g. options = \"noatime,errors=remount-ro\"",
            ));
            (Flags::default(), String::new())
        }
    };
    let force_unmount = match params.get("force_unmount") {
        None => true,
        Some(s) => truthy(s).unwrap_or_else(|| {
            errors.push(err(
                "force_unmount",
                format!("`{s}` is not true or false"),
                "write force_unmount = \"true\" (the default: holders are signalled) or \"false\"",
            ));
            true
        }),
    };
    match (device, directory, fstype, errors.is_empty()) {
        (Some(device), Some(directory), Some(fstype), true) => Ok(Fs {
            device,
            directory,
            fstype,
            flags,
            data,
            force_unmount,
        }),
        _ => Err(errors),
    }
}

/// What `config check` warns of for a filesystem that reads: a type that may need
/// the fsck this agent never runs.
pub fn fsck_warning(fs: &Fs) -> Option<ParamError> {
    (!NO_FSCK.contains(&fs.fstype.as_str())).then(|| {
        err(
            "fstype",
            format!(
                "builtin:filesystem runs no fsck, and {} may need one after a crash",
                fs.fstype
            ),
            "use a journalling filesystem (ext4, xfs), or ocf:heartbeat:Filesystem, which runs fsck for this type",
        )
    })
}

/// One line of /proc/self/mountinfo, the fields this agent reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The device number (`major:minor`).
    pub dev: (u32, u32),
    pub point: PathBuf,
    pub fstype: String,
    pub source: String,
}

/// Parses mountinfo (proc(5)): `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3
/// /dev/root rw,errors=continue`; lines that do not read are skipped.
pub fn mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (head, tail) = line.split_once(" - ")?;
            let head: Vec<&str> = head.split(' ').collect();
            let mut tail = tail.split(' ');
            let (major, minor) = head.get(2)?.split_once(':')?;
            Some(Mount {
                dev: (major.parse().ok()?, minor.parse().ok()?),
                point: PathBuf::from(unescape(head.get(4)?)),
                fstype: tail.next()?.to_string(),
                source: unescape(tail.next()?),
            })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as three-digit octal escapes.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .is_some_and(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        if b[i] == b'\\' && octal {
            let v = u16::from(b[i + 1] - b'0') * 64 + u16::from(b[i + 2] - b'0') * 8 + u16::from(b[i + 3] - b'0');
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// This process's mounts (its mount namespace's), or none if /proc cannot be read.
pub fn own_mounts() -> Vec<Mount> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| mountinfo(&t))
        .unwrap_or_default()
}

/// The mount visible at `dir`: the last one listed there (a later mount hides
/// an earlier one).
pub fn at<'a>(mounts: &'a [Mount], dir: &Path) -> Option<&'a Mount> {
    mounts.iter().rev().find(|m| m.point == dir)
}

/// The mounts at `dir` or below it, deepest first: the order to unmount them.
pub fn at_or_under<'a>(mounts: &'a [Mount], dir: &Path) -> Vec<&'a Mount> {
    let mut v: Vec<&Mount> = mounts.iter().filter(|m| m.point.starts_with(dir)).collect();
    // Later mounts first at equal depth: they hide the earlier ones.
    v.reverse();
    v.sort_by_key(|m| std::cmp::Reverse(m.point.components().count()));
    v
}

/// `path` is `dir` or inside it (as /proc shows open files: absolute paths).
pub fn is_under(path: &Path, dir: &Path) -> bool {
    path.starts_with(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn filesystem_parameters_read_as_filesystems() {
        let fs = parse(&params(&[
            ("device", "/dev/drbd0"),
            ("directory", "/srv/data/"),
            ("fstype", "ext4"),
            ("options", "noatime,ro,errors=remount-ro,defaults,data=ordered"),
        ]))
        .unwrap();
        assert_eq!(fs.device, Device::Path("/dev/drbd0".into()));
        assert_eq!(fs.directory, Path::new("/srv/data"));
        assert!(fs.flags.noatime && fs.flags.read_only);
        assert_eq!(fs.data, "errors=remount-ro,data=ordered");
        assert!(fs.force_unmount, "Filesystem's default");
        let fs = parse(&params(&[
            ("device", "UUID=0b9e-11"),
            ("directory", "/d"),
            ("fstype", "xfs"),
            ("force_unmount", "safe"),
        ]))
        .unwrap();
        assert_eq!(fs.device.path(), Path::new("/dev/disk/by-uuid/0b9e-11"));
        assert_eq!(fs.device.to_string(), "UUID=0b9e-11");
        let fs = parse(&params(&[
            ("device", "-LDATA"),
            ("directory", "/d"),
            ("fstype", "ext4"),
        ]))
        .unwrap();
        assert_eq!(fs.device, Device::Label("DATA".into()));
    }

    #[test]
    fn every_mistake_is_named_with_its_fix() {
        let e = parse(&params(&[
            ("device", "nas:/export"),
            ("directory", "/"),
            ("fstype", "nfs"),
            ("options", "bind"),
            ("force_unmount", "maybe"),
            ("run_fsck", "force"),
        ]))
        .unwrap_err();
        let named: Vec<&str> = e.iter().map(|e| e.param.as_str()).collect();
        assert_eq!(
            named,
            ["run_fsck", "device", "directory", "fstype", "options", "force_unmount"]
        );
        assert!(e.iter().all(|e| !e.help.is_empty()));
        let e = parse(&params(&[])).unwrap_err();
        let named: Vec<&str> = e.iter().map(|e| e.param.as_str()).collect();
        assert_eq!(named, ["device", "directory", "fstype"]);
        let e = parse(&params(&[
            ("device", "sdb1"),
            ("directory", "srv"),
            ("fstype", "ext4,xfs"),
        ]))
        .unwrap_err();
        assert_eq!(e.len(), 3, "{e:?}");
        let e = parse(&params(&[
            ("device", "/dev/sdb1"),
            ("directory", "/a/../b"),
            ("fstype", "ext4"),
        ]))
        .unwrap_err();
        assert_eq!(e[0].param, "directory");
    }

    #[test]
    fn mountinfo_lines_read_with_their_escapes() {
        let text = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                    36 22 7:3 / /srv/my\\040data rw,noatime shared:5 master:1 - ext4 /dev/loop3 rw,errors=continue\n\
                    garbage line\n\
                    37 36 0:52 / /srv/my\\040data/run rw - tmpfs tmpfs rw\n\
                    38 22 7:4 / /srv/my\\040data rw - ext4 /dev/loop4 rw\n";
        let m = mountinfo(text);
        assert_eq!(m.len(), 4, "the garbage line is skipped");
        assert_eq!(m[1].dev, (7, 3));
        assert_eq!(m[1].point, Path::new("/srv/my data"));
        assert_eq!(m[1].source, "/dev/loop3");
        let dir = Path::new("/srv/my data");
        assert_eq!(at(&m, dir).unwrap().dev, (7, 4), "the later mount hides the earlier");
        let order: Vec<_> = at_or_under(&m, dir).iter().map(|m| m.dev).collect();
        assert_eq!(order, [(0, 52), (7, 4), (7, 3)], "deepest first, then the later first");
        assert!(
            at(&m, Path::new("/srv/my")).is_none(),
            "a prefix of the name is not the directory"
        );
        assert!(!is_under(Path::new("/srv/my datum/x"), dir));
        assert!(is_under(Path::new("/srv/my data/x"), dir));
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/end\\04"), "/end\\04");
        assert_eq!(unescape("\\777"), "\u{fffd}");
    }

    #[test]
    fn options_split_into_flags_and_the_filesystems_own() {
        let (f, d) = options("rw,nosuid,nodev,relatime,x-systemd.automount,comment=x,user_xattr").unwrap();
        assert!(f.nosuid && f.nodev && !f.read_only);
        assert_eq!(f.relatime, Some(true));
        assert_eq!(d, "user_xattr");
        assert!(options("remount,ro").is_err());
        assert!(options("loop=/dev/loop0").is_err());
        assert_eq!(options("").unwrap(), (Flags::default(), String::new()));
    }
}
