//! Large zeroed buffers backed by transparent huge pages where the kernel offers them (Linux `madvise` mode):
//! quantizing SmolLM2 touches ~1.3 GB of fresh memory, and with 4 KiB pages the page faults alone cost about a
//! second of system time on the 2-core reference machine.

/// A zeroed `Vec<f32>` of `len` elements.
pub fn zeroed_f32(len: usize) -> Vec<f32> {
    let v = vec![0f32; len];
    advise_huge_pages(v.as_ptr() as usize, len * size_of::<f32>());
    v
}

/// f32 buffers handed back after use and handed out again. Work that makes a large buffer per tensor (decoded
/// weights, scores) otherwise touches fresh memory for every tensor: a page fault and the kernel's zeroing per
/// page, which cost as much as reading the weights. Buffers come back when their `Recycled` is dropped and go
/// with the pool.
#[derive(Default)]
pub struct Pool {
    free: std::sync::Mutex<Vec<Vec<f32>>>,
}

/// Buffers a pool keeps at most (the largest): enough for every tensor in flight on a few threads.
const POOL_BUFFERS: usize = 8;

impl Pool {
    /// A buffer of `len` values whose contents are unspecified (the caller writes them all): the smallest free
    /// one that holds `len`, else a new one.
    pub fn take(&self, len: usize) -> Recycled<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let fitting = (0..free.len()).filter(|&i| free[i].len() >= len).min_by_key(|&i| free[i].len());
        let values = match fitting {
            Some(i) => free.swap_remove(i),
            None => {
                drop(free);
                zeroed_f32(len)
            }
        };
        Recycled { pool: self, values, len }
    }

    fn give(&self, values: Vec<f32>) {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        free.push(values);
        if free.len() > POOL_BUFFERS {
            let smallest = (0..free.len()).min_by_key(|&i| free[i].len()).unwrap_or(0);
            free.swap_remove(smallest);
        }
    }
}

/// A buffer from a `Pool`, returned to it when dropped.
pub struct Recycled<'a> {
    pool: &'a Pool,
    /// Always whole (its length is its size), so that no value of it is ever uninitialised.
    values: Vec<f32>,
    len: usize,
}

impl std::ops::Deref for Recycled<'_> {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.values[..self.len]
    }
}

impl std::ops::DerefMut for Recycled<'_> {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.values[..self.len]
    }
}

impl Drop for Recycled<'_> {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.values));
    }
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

/// Bytes several tensors share: a memory-mapped file (`Arc<memmap2::Mmap>`) or encoded tensors made in memory
/// (`Arc<Vec<u8>>`).
pub type SharedBytes = std::sync::Arc<dyn std::ops::Deref<Target = [u8]> + Send + Sync>;

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

#[cfg(test)]
mod tests {
    use super::Pool;

    #[test]
    fn a_pool_hands_back_the_smallest_buffer_that_fits_and_keeps_only_a_few() {
        let pool = Pool::default();
        let (small, large) = (pool.take(10), pool.take(1000));
        let (small_at, large_at) = (small.as_ptr(), large.as_ptr());
        drop((small, large));
        let mut again = pool.take(8);
        assert_eq!((again.len(), again.as_ptr()), (8, small_at), "the smallest that holds 8");
        again.fill(1.0);
        let larger = pool.take(500);
        assert_eq!((larger.len(), larger.as_ptr()), (500, large_at));
        let fresh = pool.take(2000);
        assert_eq!(fresh.len(), 2000, "none fits: a new one");
        drop((again, larger, fresh));
        let many: Vec<_> = (0..12).map(|i| pool.take(100 + i)).collect();
        drop(many);
        assert_eq!(pool.free.lock().unwrap().len(), super::POOL_BUFFERS);
    }
}
