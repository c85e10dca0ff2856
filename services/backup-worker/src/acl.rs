//! `prepare-directory`: POSIX ACLs that let the service's user write into a
//! backup directory that belongs to someone else (a host user's bind mount),
//! without chown and without running the service as root.
//!
//! The directory gets `user:10001:rwx` in its access ACL, and a default ACL
//! that every new file inherits: the directory's owner and the service may
//! read it, nobody else. A file created with mode 0640 then gets a mask of
//! `r--` (its group bits), so the owner of the directory can read the
//! service's files but not change them, and `other` has nothing.
//!
//! The ACLs are written as the kernel's extended attributes
//! (`system.posix_acl_access`, `system.posix_acl_default`), so no libacl is
//! needed: one `setxattr` each. Setting them needs the directory's owner or
//! CAP_FOWNER, which is all the one-shot container is given.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The UID the service runs as in its image (see docker/base/build-bases.sh).
pub const SERVICE_UID: u32 = 10001;

/// The two ACLs a directory can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Checked on access to the directory itself.
    Access,
    /// Copied to every file and directory created inside it.
    Default,
}

impl Kind {
    pub fn xattr_name(self) -> &'static str {
        match self {
            Self::Access => "system.posix_acl_access",
            Self::Default => "system.posix_acl_default",
        }
    }
}

/// An entry's tag, with the kernel's values (`linux/posix_acl.h`). Entries
/// must be stored sorted by tag, then by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tag {
    UserObj = 0x01,
    User = 0x02,
    GroupObj = 0x04,
    Group = 0x08,
    Mask = 0x10,
    Other = 0x20,
}

impl Tag {
    fn from_u16(value: u16) -> Option<Self> {
        Some(match value {
            0x01 => Self::UserObj,
            0x02 => Self::User,
            0x04 => Self::GroupObj,
            0x08 => Self::Group,
            0x10 => Self::Mask,
            0x20 => Self::Other,
            _ => return None,
        })
    }

    /// Only named users and groups carry an id.
    fn is_named(self) -> bool {
        matches!(self, Self::User | Self::Group)
    }
}

/// `ACL_UNDEFINED_ID`: the id stored for entries that name no one.
pub const UNDEFINED_ID: u32 = u32::MAX;
const VERSION: u32 = 2;
const HEADER_BYTES: usize = 4;
const ENTRY_BYTES: usize = 8;

pub const READ: u16 = 4;
pub const WRITE: u16 = 2;
pub const EXECUTE: u16 = 1;
pub const RWX: u16 = READ | WRITE | EXECUTE;
pub const RX: u16 = READ | EXECUTE;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub tag: Tag,
    /// `READ | WRITE | EXECUTE` bits.
    pub perm: u16,
    /// The user or group id for `User` and `Group`, else [`UNDEFINED_ID`].
    pub id: u32,
}

impl Entry {
    /// An entry that names no one: owner, owning group, mask, other.
    pub fn unnamed(tag: Tag, perm: u16) -> Self {
        Self {
            tag,
            perm,
            id: UNDEFINED_ID,
        }
    }

    pub fn user(uid: u32, perm: u16) -> Self {
        Self {
            tag: Tag::User,
            perm,
            id: uid,
        }
    }
}

/// An ACL as the kernel stores it. Built through [`Acl::new`], which sorts
/// the entries, so two equal ACLs encode to equal bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{0} bytes is not a version-2 header followed by 8-byte entries")]
    Length(usize),
    #[error("version {0}, expected 2")]
    Version(u32),
    #[error("unknown tag {0:#x}")]
    Tag(u16),
}

impl Acl {
    pub fn new(mut entries: Vec<Entry>) -> Self {
        entries.sort_by_key(|entry| (entry.tag, entry.id));
        Self { entries }
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The `system.posix_acl_*` value: a little-endian u32 version, then
    /// `{u16 tag, u16 perm, u32 id}` per entry.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(HEADER_BYTES + ENTRY_BYTES * self.entries.len());
        bytes.extend_from_slice(&VERSION.to_le_bytes());
        for entry in &self.entries {
            bytes.extend_from_slice(&(entry.tag as u16).to_le_bytes());
            bytes.extend_from_slice(&entry.perm.to_le_bytes());
            bytes.extend_from_slice(&entry.id.to_le_bytes());
        }
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() < HEADER_BYTES || !(bytes.len() - HEADER_BYTES).is_multiple_of(ENTRY_BYTES) {
            return Err(DecodeError::Length(bytes.len()));
        }
        let version = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        let entries = bytes[HEADER_BYTES..]
            .chunks_exact(ENTRY_BYTES)
            .map(|chunk| {
                let tag = u16::from_le_bytes([chunk[0], chunk[1]]);
                Ok(Entry {
                    tag: Tag::from_u16(tag).ok_or(DecodeError::Tag(tag))?,
                    perm: u16::from_le_bytes([chunk[2], chunk[3]]),
                    id: u32::from_le_bytes(chunk[4..8].try_into().expect("4 bytes")),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self::new(entries))
    }
}

/// `getfacl`'s short form, for the log: `user::rwx,user:1000:rwx,mask::rwx`.
impl fmt::Display for Acl {
    fn fmt(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        for (index, entry) in self.entries.iter().enumerate() {
            let kind = match entry.tag {
                Tag::UserObj | Tag::User => "user",
                Tag::GroupObj | Tag::Group => "group",
                Tag::Mask => "mask",
                Tag::Other => "other",
            };
            let separator = if index == 0 { "" } else { "," };
            let id = if entry.tag.is_named() {
                entry.id.to_string()
            } else {
                String::new()
            };
            let bit = |flag, letter| if entry.perm & flag != 0 { letter } else { '-' };
            write!(
                formatter,
                "{separator}{kind}:{id}:{}{}{}",
                bit(READ, 'r'),
                bit(WRITE, 'w'),
                bit(EXECUTE, 'x')
            )?;
        }
        Ok(())
    }
}

/// The directory's access ACL: its owner, group and other permissions as
/// they are (taken from its extended ACL if it has one, where the mode's
/// group bits are the mask), any other named entries kept, plus the service
/// with `rwx` and a mask that lets it through.
pub fn access_acl(mode: u32, existing: Option<&Acl>) -> Acl {
    let mut entries: Vec<Entry> = match existing {
        Some(acl) => acl
            .entries()
            .iter()
            .filter(|entry| {
                entry.tag != Tag::Mask && !(entry.tag == Tag::User && entry.id == SERVICE_UID)
            })
            .copied()
            .collect(),
        None => {
            let bits = |shift: u32| ((mode >> shift) & 0o7) as u16;
            vec![
                Entry::unnamed(Tag::UserObj, bits(6)),
                Entry::unnamed(Tag::GroupObj, bits(3)),
                Entry::unnamed(Tag::Other, bits(0)),
            ]
        }
    };
    entries.push(Entry::user(SERVICE_UID, RWX));
    entries.push(Entry::unnamed(Tag::Mask, RWX));
    Acl::new(entries)
}

/// What new files in the directory inherit: the directory's owner and the
/// service get everything the file's mode allows, the owning group may
/// read, others nothing.
pub fn default_acl(owner: u32) -> Acl {
    let mut entries = vec![
        Entry::unnamed(Tag::UserObj, RWX),
        Entry::user(SERVICE_UID, RWX),
        Entry::unnamed(Tag::GroupObj, RX),
        Entry::unnamed(Tag::Mask, RWX),
        Entry::unnamed(Tag::Other, 0),
    ];
    // A directory already owned by the service: one entry, not a duplicate
    // (which the kernel refuses).
    if owner != SERVICE_UID {
        entries.push(Entry::user(owner, RWX));
    }
    Acl::new(entries)
}

#[derive(Debug, thiserror::Error)]
pub enum AclError {
    #[error("cannot prepare {path}")]
    Stat {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot prepare {0}: not a directory")]
    NotADirectory(PathBuf),
    #[error(
        "the filesystem of {path} does not support POSIX ACLs: give the directory to uid \
         {SERVICE_UID} instead (on the host: `sudo chown {SERVICE_UID} DIR`), or use a named \
         volume rather than a host directory"
    )]
    Unsupported { path: PathBuf },
    #[error(
        "cannot set the ACLs of {path} (needs root with CAP_FOWNER, or the directory's owner)"
    )]
    Set {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the ACLs of {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} has an ACL that cannot be read")]
    Malformed {
        path: PathBuf,
        #[source]
        source: DecodeError,
    },
}

/// What [`prepare_directory`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub owner: u32,
    pub access: Acl,
    pub default: Acl,
    /// False when the directory already had exactly these ACLs.
    pub changed: bool,
}

/// Gives the service's user access to `directory` and makes new files in it
/// readable by the directory's owner and by no one else. Idempotent.
pub fn prepare_directory(directory: &Path) -> Result<Prepared, AclError> {
    let metadata = std::fs::metadata(directory).map_err(|source| AclError::Stat {
        path: directory.to_owned(),
        source,
    })?;
    if !metadata.is_dir() {
        return Err(AclError::NotADirectory(directory.to_owned()));
    }
    let owner = metadata.uid();
    let existing_access = read(directory, Kind::Access)?;
    let existing_default = read(directory, Kind::Default)?;
    let access = access_acl(metadata.mode(), existing_access.as_ref());
    let default = default_acl(owner);
    let changed =
        existing_access.as_ref() != Some(&access) || existing_default.as_ref() != Some(&default);
    if changed {
        write(directory, Kind::Access, &access)?;
        write(directory, Kind::Default, &default)?;
    }
    Ok(Prepared {
        owner,
        access,
        default,
        changed,
    })
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// The error of an ACL call on `path`: `Unsupported` when the filesystem
/// has no POSIX ACLs (that one has its own advice), `other` otherwise.
fn classify(
    path: &Path,
    source: io::Error,
    other: impl FnOnce(PathBuf, io::Error) -> AclError,
) -> AclError {
    if source.raw_os_error() == Some(libc::EOPNOTSUPP) {
        AclError::Unsupported {
            path: path.to_owned(),
        }
    } else {
        other(path.to_owned(), source)
    }
}

/// The ACL of `kind` on `path`; `None` when it has none (only mode bits).
pub fn read(path: &Path, kind: Kind) -> Result<Option<Acl>, AclError> {
    let read_error =
        |source| classify(path, source, |path, source| AclError::Read { path, source });
    let c_path = c_path(path).map_err(read_error)?;
    let name = CString::new(kind.xattr_name()).expect("no NUL in the name");
    // 64 entries are far more than any ACL we meet; ERANGE says otherwise.
    let mut buffer = vec![0u8; HEADER_BYTES + 64 * ENTRY_BYTES];
    // SAFETY: both strings are NUL-terminated and live across the call; the
    // kernel writes at most `buffer.len()` bytes into `buffer`.
    let length = unsafe {
        libc::getxattr(
            c_path.as_ptr(),
            name.as_ptr(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
        )
    };
    if length < 0 {
        let error = io::Error::last_os_error();
        return match error.raw_os_error() {
            Some(libc::ENODATA) => Ok(None),
            _ => Err(read_error(error)),
        };
    }
    Acl::decode(&buffer[..length as usize])
        .map(Some)
        .map_err(|source| AclError::Malformed {
            path: path.to_owned(),
            source,
        })
}

fn write(path: &Path, kind: Kind, acl: &Acl) -> Result<(), AclError> {
    let set_error = |source| classify(path, source, |path, source| AclError::Set { path, source });
    let c_path = c_path(path).map_err(set_error)?;
    let name = CString::new(kind.xattr_name()).expect("no NUL in the name");
    let value = acl.encode();
    // SAFETY: both strings are NUL-terminated and `value` is `value.len()`
    // readable bytes, all alive across the call.
    let result = unsafe {
        libc::setxattr(
            c_path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(set_error(io::Error::last_os_error()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes `setfacl -m u:10001:rwx` writes on a 0755 directory, read
    /// back with `getfattr -e hex -n system.posix_acl_access`.
    const SETFACL_ON_0755: &str = "0200000001000700ffffffff020007001127000004000500ffffffff\
                                   10000700ffffffff20000500ffffffff";

    fn hex_of(acl: &Acl) -> String {
        hex::encode(acl.encode())
    }

    #[test]
    fn encodes_the_header_and_each_entry_little_endian() {
        let acl = Acl::new(vec![
            Entry::unnamed(Tag::UserObj, RWX),
            Entry::user(1000, READ),
        ]);
        assert_eq!(
            acl.encode(),
            [
                2, 0, 0, 0, // version
                0x01, 0, 7, 0, 0xff, 0xff, 0xff, 0xff, // user::rwx
                0x02, 0, 4, 0, 0xe8, 0x03, 0, 0, // user:1000:r--
            ]
        );
    }

    #[test]
    fn entries_are_sorted_by_tag_then_id() {
        let acl = Acl::new(vec![
            Entry::unnamed(Tag::Other, 0),
            Entry::user(SERVICE_UID, RWX),
            Entry::unnamed(Tag::Mask, RWX),
            Entry::user(1000, RWX),
            Entry::unnamed(Tag::UserObj, RWX),
        ]);
        let order: Vec<_> = acl.entries().iter().map(|e| (e.tag, e.id)).collect();
        assert_eq!(
            order,
            [
                (Tag::UserObj, UNDEFINED_ID),
                (Tag::User, 1000),
                (Tag::User, SERVICE_UID),
                (Tag::Mask, UNDEFINED_ID),
                (Tag::Other, UNDEFINED_ID),
            ]
        );
    }

    #[test]
    fn decode_reverses_encode_and_rejects_what_is_not_an_acl() {
        let acl = default_acl(1000);
        assert_eq!(Acl::decode(&acl.encode()).unwrap(), acl);
        assert_eq!(Acl::decode(&[2, 0, 0]), Err(DecodeError::Length(3)));
        assert_eq!(Acl::decode(&[2, 0, 0, 0, 1]), Err(DecodeError::Length(5)));
        assert_eq!(Acl::decode(&[1, 0, 0, 0]), Err(DecodeError::Version(1)));
        assert_eq!(
            Acl::decode(&[2, 0, 0, 0, 0x40, 0, 7, 0, 0, 0, 0, 0]),
            Err(DecodeError::Tag(0x40))
        );
    }

    #[test]
    fn the_access_acl_keeps_the_mode_and_adds_the_service() {
        let acl = access_acl(0o40755, None);
        assert_eq!(
            acl.to_string(),
            "user::rwx,user:10001:rwx,group::r-x,mask::rwx,other::r-x"
        );
        assert_eq!(hex_of(&acl), SETFACL_ON_0755);
    }

    #[test]
    fn the_access_acl_is_the_same_when_computed_again_from_itself() {
        let first = access_acl(0o40750, None);
        // With an extended ACL the mode's group bits show the mask (rwx):
        // the owning group's own r-x must come from the ACL, not the mode.
        let again = access_acl(0o40770, Some(&first));
        assert_eq!(again, first);
        assert_eq!(
            again.to_string(),
            "user::rwx,user:10001:rwx,group::r-x,mask::rwx,other::---"
        );
    }

    #[test]
    fn the_access_acl_keeps_other_named_entries() {
        let existing = Acl::new(vec![
            Entry::unnamed(Tag::UserObj, RWX),
            Entry::user(2000, READ),
            Entry::unnamed(Tag::GroupObj, RX),
            Entry {
                tag: Tag::Group,
                perm: RX,
                id: 50,
            },
            Entry::unnamed(Tag::Mask, RX),
            Entry::unnamed(Tag::Other, 0),
        ]);
        assert_eq!(
            access_acl(0o40750, Some(&existing)).to_string(),
            "user::rwx,user:2000:r--,user:10001:rwx,group::r-x,group:50:r-x,mask::rwx,other::---"
        );
    }

    #[test]
    fn the_default_acl_names_the_owner_and_the_service() {
        assert_eq!(
            default_acl(1000).to_string(),
            "user::rwx,user:1000:rwx,user:10001:rwx,group::r-x,mask::rwx,other::---"
        );
        assert_eq!(
            default_acl(SERVICE_UID).to_string(),
            "user::rwx,user:10001:rwx,group::r-x,mask::rwx,other::---"
        );
    }
}
