//! Large zeroed buffers backed by transparent huge pages where the kernel offers them (Linux `madvise` mode):
//! quantizing SmolLM2 touches ~1.3 GB of fresh memory, and with 4 KiB pages the page faults alone cost about a
//! second of system time on the 2-core reference machine.

/// A zeroed `Vec<f32>` of `len` elements.
pub fn zeroed_f32(len: usize) -> Vec<f32> {
    let v = vec![0f32; len];
    advise_huge_pages(v.as_ptr() as usize, len * size_of::<f32>());
    v
}

/// Buffers below this size stay on ordinary pages (a huge page is 2 MiB).
const HUGE_PAGE: usize = 2 << 20;

fn advise_huge_pages(start: usize, bytes: usize) {
    #[cfg(target_os = "linux")]
    {
        // Only whole huge pages inside the buffer; the untouched zero pages of a fresh allocation are not yet mapped,
        // so the advice takes effect at the first write.
        let aligned = start.next_multiple_of(HUGE_PAGE);
        let end = (start + bytes) / HUGE_PAGE * HUGE_PAGE;
        if end > aligned {
            // SAFETY: the range lies inside a live allocation; MADV_HUGEPAGE changes no contents.
            unsafe {
                libc::madvise(aligned as *mut libc::c_void, end - aligned, libc::MADV_HUGEPAGE);
            }
        }
    }
}

/// Bytes owned in memory or left in a memory-mapped file: a packed model's codes stay in its file.
#[derive(Clone)]
pub enum Bytes {
    Owned(Vec<u8>),
    Mapped { file: std::sync::Arc<memmap2::Mmap>, range: std::ops::Range<usize> },
}

impl Default for Bytes {
    fn default() -> Self {
        Bytes::Owned(Vec::new())
    }
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Owned(bytes) => bytes,
            Bytes::Mapped { file, range } => &file[range.clone()],
        }
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(bytes: Vec<u8>) -> Self {
        Bytes::Owned(bytes)
    }
}

impl PartialEq for Bytes {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Bytes {}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bytes::Owned(bytes) => write!(f, "{} bytes", bytes.len()),
            Bytes::Mapped { range, .. } => write!(f, "{} mapped bytes", range.len()),
        }
    }
}
