//! A reader for the zip container torch.save writes: uncompressed ("stored") entries located
//! through the central directory, with ZIP64 records for archives past 4 GiB. It reads from a
//! byte slice (usually a memory map) and never copies entry data.
//!
//! Only what torch writes is accepted: deflated, encrypted or multi-disk archives are
//! rejected with a named error rather than half-read.

use crate::error::{Error, Result};

const EOCD_SIG: u32 = 0x0605_4b50;
const EOCD64_SIG: u32 = 0x0606_4b50;
const EOCD64_LOCATOR_SIG: u32 = 0x0706_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const LOCAL_SIG: u32 = 0x0403_4b50;
const EOCD_LEN: usize = 22;
const CENTRAL_LEN: usize = 46;
const LOCAL_LEN: usize = 30;
const ZIP64_EXTRA_ID: u16 = 0x0001;

/// One stored file of the archive, with its data already located.
#[derive(Debug, Clone)]
pub struct ZipEntry {
    pub name: String,
    /// Absolute offset of the first data byte in the archive.
    pub data_offset: u64,
    pub size: u64,
    pub crc32: u32,
    method: u16,
}

/// A parsed archive borrowing the archive bytes.
pub struct ZipArchive<'a> {
    data: &'a [u8],
    entries: Vec<ZipEntry>,
}

/// Bounds-checked little-endian reads; every failure is a truncation error.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8], pos: usize, what: &'static str) -> Self {
        Cursor { buf, pos, what }
    }
    fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(Error::Zip(format!("truncated {}", self.what))),
        }
    }
    fn u16(&mut self) -> Result<u16> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

fn to_usize(v: u64, what: &str) -> Result<usize> {
    usize::try_from(v).map_err(|_| Error::Zip(format!("{what} {v} does not fit in memory")))
}

/// Where the central directory is and how many entries it claims.
struct Directory {
    offset: u64,
    size: u64,
    count: u64,
}

fn find_eocd(data: &[u8]) -> Result<usize> {
    if data.len() < EOCD_LEN {
        return Err(Error::Zip(format!(
            "file is {} bytes, too short for a zip archive",
            data.len()
        )));
    }
    // The record sits at the end, followed only by a comment of at most 65535 bytes.
    let lowest = data.len().saturating_sub(EOCD_LEN + 0xFFFF);
    let mut pos = data.len() - EOCD_LEN;
    loop {
        if data[pos..pos + 4] == EOCD_SIG.to_le_bytes() {
            let comment_len = u16::from_le_bytes([data[pos + 20], data[pos + 21]]) as usize;
            if pos + EOCD_LEN + comment_len <= data.len() {
                return Ok(pos);
            }
        }
        if pos == lowest {
            return Err(Error::Zip(
                "no end-of-central-directory record (truncated or not a zip file)".into(),
            ));
        }
        pos -= 1;
    }
}

fn read_directory(data: &[u8]) -> Result<Directory> {
    let eocd = find_eocd(data)?;
    let mut c = Cursor::new(data, eocd + 4, "end-of-central-directory record");
    let disk = c.u16()?;
    let cd_disk = c.u16()?;
    let _count_this_disk = c.u16()?;
    let count = c.u16()?;
    let size = c.u32()?;
    let offset = c.u32()?;
    let needs64 = count == 0xFFFF || size == 0xFFFF_FFFF || offset == 0xFFFF_FFFF;
    if !needs64 {
        if disk != 0 || cd_disk != 0 {
            return Err(Error::Zip("multi-disk archives are not supported".into()));
        }
        return Ok(Directory {
            offset: offset as u64,
            size: size as u64,
            count: count as u64,
        });
    }
    let loc = eocd
        .checked_sub(20)
        .ok_or_else(|| Error::Zip("ZIP64 end-of-central-directory locator missing".into()))?;
    let mut c = Cursor::new(data, loc, "ZIP64 locator");
    if c.u32()? != EOCD64_LOCATOR_SIG {
        return Err(Error::Zip(
            "ZIP64 end-of-central-directory locator missing".into(),
        ));
    }
    let _disk = c.u32()?;
    let rec = to_usize(c.u64()?, "ZIP64 record offset")?;
    let total_disks = c.u32()?;
    if total_disks > 1 {
        return Err(Error::Zip("multi-disk archives are not supported".into()));
    }
    let mut c = Cursor::new(data, rec, "ZIP64 end-of-central-directory record");
    if c.u32()? != EOCD64_SIG {
        return Err(Error::Zip(
            "ZIP64 end-of-central-directory record has a bad signature".into(),
        ));
    }
    let _rec_size = c.u64()?;
    let _made_by = c.u16()?;
    let _needed = c.u16()?;
    let disk = c.u32()?;
    let cd_disk = c.u32()?;
    let _count_this_disk = c.u64()?;
    let count = c.u64()?;
    let size = c.u64()?;
    let offset = c.u64()?;
    if disk != 0 || cd_disk != 0 {
        return Err(Error::Zip("multi-disk archives are not supported".into()));
    }
    Ok(Directory {
        offset,
        size,
        count,
    })
}

/// Replaces 0xFFFF_FFFF placeholders with the values of the ZIP64 extra field, which holds
/// exactly the fields that overflowed, in this order.
fn apply_zip64(
    extra: &[u8],
    usize_: &mut u64,
    csize: &mut u64,
    offset: &mut u64,
    name: &str,
) -> Result<()> {
    let (need_u, need_c, need_o) = (
        *usize_ == 0xFFFF_FFFF,
        *csize == 0xFFFF_FFFF,
        *offset == 0xFFFF_FFFF,
    );
    if !(need_u || need_c || need_o) {
        return Ok(());
    }
    let mut c = Cursor::new(extra, 0, "extra field");
    while c.pos + 4 <= extra.len() {
        let id = c.u16()?;
        let len = c.u16()? as usize;
        let body = c.bytes(len)?;
        if id != ZIP64_EXTRA_ID {
            continue;
        }
        let mut b = Cursor::new(body, 0, "ZIP64 extra field");
        if need_u {
            *usize_ = b.u64()?;
        }
        if need_c {
            *csize = b.u64()?;
        }
        if need_o {
            *offset = b.u64()?;
        }
        return Ok(());
    }
    Err(Error::Zip(format!(
        "entry `{name}` has 32-bit placeholders but no ZIP64 extra field"
    )))
}

impl<'a> ZipArchive<'a> {
    /// Parses the central directory and every local header, checking that each entry's data
    /// lies inside the archive.
    pub fn parse(data: &'a [u8]) -> Result<Self> {
        let dir = read_directory(data)?;
        let start = to_usize(dir.offset, "central directory offset")?;
        let size = to_usize(dir.size, "central directory size")?;
        let end = start
            .checked_add(size)
            .filter(|&e| e <= data.len())
            .ok_or_else(|| Error::Zip("central directory lies outside the file".into()))?;
        if dir.count > (size / CENTRAL_LEN) as u64 {
            return Err(Error::Zip(format!(
                "central directory claims {} entries but holds at most {}",
                dir.count,
                size / CENTRAL_LEN
            )));
        }
        let cd = &data[start..end];
        let mut c = Cursor::new(cd, 0, "central directory");
        let mut entries = Vec::new();
        for _ in 0..dir.count {
            if c.u32()? != CENTRAL_SIG {
                return Err(Error::Zip(
                    "central directory entry has a bad signature".into(),
                ));
            }
            let _made_by = c.u16()?;
            let _needed = c.u16()?;
            let flags = c.u16()?;
            let method = c.u16()?;
            let _time = c.u32()?;
            let crc32 = c.u32()?;
            let mut csize = c.u32()? as u64;
            let mut usize_ = c.u32()? as u64;
            let name_len = c.u16()? as usize;
            let extra_len = c.u16()? as usize;
            let comment_len = c.u16()? as usize;
            let _disk = c.u16()?;
            let _int_attr = c.u16()?;
            let _ext_attr = c.u32()?;
            let mut local = c.u32()? as u64;
            let name_bytes = c.bytes(name_len)?;
            let extra = c.bytes(extra_len)?;
            c.bytes(comment_len)?;
            let name = String::from_utf8_lossy(name_bytes).into_owned();
            apply_zip64(extra, &mut usize_, &mut csize, &mut local, &name)?;
            if flags & 1 != 0 {
                return Err(Error::Zip(format!("entry `{name}` is encrypted")));
            }
            if method == 0 && csize != usize_ {
                return Err(Error::Zip(format!(
                    "stored entry `{name}` has compressed size {csize} != size {usize_}"
                )));
            }
            let data_offset = Self::locate_data(data, local, name_bytes, &name)?;
            let fits = data_offset
                .checked_add(csize)
                .is_some_and(|e| e <= data.len() as u64);
            if !fits {
                return Err(Error::Zip(format!(
                    "entry `{name}` ({csize} bytes at offset {data_offset}) runs past the end of the file"
                )));
            }
            entries.push(ZipEntry {
                name,
                data_offset,
                size: usize_,
                crc32,
                method,
            });
        }
        Ok(ZipArchive { data, entries })
    }

    /// The data follows the local header, whose extra field (torch's alignment padding) may
    /// differ in length from the central one; sizes come from the central directory because
    /// torch sets the data-descriptor flag and may leave local sizes zero.
    fn locate_data(data: &[u8], local: u64, central_name: &[u8], name: &str) -> Result<u64> {
        let pos = to_usize(local, "local header offset")?;
        let mut c = Cursor::new(data, pos, "local file header");
        if c.u32()? != LOCAL_SIG {
            return Err(Error::Zip(format!(
                "local header of `{name}` at offset {local} has a bad signature"
            )));
        }
        c.bytes(LOCAL_LEN - 4 - 4)?;
        let name_len = c.u16()? as usize;
        let extra_len = c.u16()? as usize;
        if c.bytes(name_len)? != central_name {
            return Err(Error::Zip(format!(
                "local header name differs from central directory name `{name}`"
            )));
        }
        c.bytes(extra_len)?;
        Ok(c.pos as u64)
    }

    pub fn entries(&self) -> &[ZipEntry] {
        &self.entries
    }

    pub fn find(&self, name: &str) -> Option<&ZipEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The entry's bytes, after checking it is stored and, when `verify_crc`, its CRC-32.
    pub fn read(&self, entry: &ZipEntry, verify_crc: bool) -> Result<&'a [u8]> {
        if entry.method != 0 {
            return Err(Error::Zip(format!(
                "entry `{}` is compressed (method {}); torch.save writes uncompressed entries, \
                 so re-save the checkpoint with torch.save",
                entry.name, entry.method
            )));
        }
        // parse() checked data_offset + size against the slice length.
        let start = entry.data_offset as usize;
        let bytes = &self.data[start..start + entry.size as usize];
        if verify_crc {
            let crc = crc32fast::hash(bytes);
            if crc != entry.crc32 {
                return Err(Error::Zip(format!(
                    "entry `{}` fails its CRC-32 check (stored {:08x}, computed {crc:08x}): the file is corrupt",
                    entry.name, entry.crc32
                )));
            }
        }
        Ok(bytes)
    }
}
