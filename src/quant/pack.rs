//! Packing unsigned integer codes of any width (1..=16 bits) into bytes, LSB first.

/// Packs `codes` at `bits` bits each; the last byte is zero-padded.
pub fn pack(codes: impl IntoIterator<Item = u16>, bits: u8) -> Vec<u8> {
    pack_counted(codes, bits, 0)
}

/// `pack` with the number of codes known in advance (the output is allocated once).
pub fn pack_counted(codes: impl IntoIterator<Item = u16>, bits: u8, count: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(packed_len(count, bits));
    let (mut acc, mut filled) = (0u32, 0u8);
    for code in codes {
        debug_assert!(bits == 16 || code < (1 << bits));
        acc |= (code as u32) << filled;
        filled += bits;
        while filled >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            filled -= 8;
        }
    }
    if filled > 0 {
        out.push(acc as u8);
    }
    out
}

/// The same bytes as `pack`, packed in parallel chunks of a multiple of 8 codes (so each chunk ends on a byte).
pub fn pack_parallel<T: Copy + Into<u16> + Sync>(codes: &[T], bits: u8) -> Vec<u8> {
    use rayon::prelude::*;
    const CHUNK: usize = 8 * 8192;
    let chunks: Vec<Vec<u8>> =
        codes.par_chunks(CHUNK).map(|c| pack_counted(c.iter().map(|&v| v.into()), bits, c.len())).collect();
    chunks.concat()
}

/// An LSB-first bit stream of codes of any width (1..=64 bits), in the byte order `pack` writes. Row chunks of
/// a tensor each fill their own writer while quantizing; `concat` joins them into the stored bytes.
#[derive(Clone, Debug, Default)]
pub struct BitWriter {
    words: Vec<u64>,
    /// Bits not yet in `words`, the low `filled` bits valid.
    acc: u64,
    filled: u32,
}

impl BitWriter {
    /// Appends the low `bits` bits of `code` (the higher bits must be zero).
    #[inline]
    pub fn push(&mut self, code: u64, bits: u32) {
        debug_assert!(bits == 64 || code >> bits == 0);
        self.acc |= code << self.filled;
        let total = self.filled + bits;
        if total >= 64 {
            self.words.push(self.acc);
            let used = 64 - self.filled;
            self.acc = if used == 64 { 0 } else { code >> used };
            self.filled = total - 64;
        } else {
            self.filled = total;
        }
    }

    /// Appends `codes` at `bits` (1..=16) bits each, with the stream's state in registers for the loop.
    #[inline(always)]
    pub fn push_all(&mut self, codes: &[u16], bits: u32) {
        self.words.reserve(codes.len() * bits as usize / 64 + 1);
        let (mut acc, mut filled) = (self.acc, self.filled);
        for &code in codes {
            let code = code as u64;
            acc |= code << filled;
            filled += bits;
            if filled >= 64 {
                self.words.push(acc);
                filled -= 64;
                // The code's bits that did not fit (none when it ended exactly at the word's end).
                acc = if filled == 0 { 0 } else { code >> (bits - filled) };
            }
        }
        (self.acc, self.filled) = (acc, filled);
    }

    /// Appends small values (tier indices) at `bits` bits each, a 64-bit word's worth at a time.
    #[inline(always)]
    pub fn push_small(&mut self, values: &[u8], bits: u32) {
        let per_word = (64 / bits) as usize;
        for chunk in values.chunks(per_word) {
            let word = chunk.iter().enumerate().fold(0u64, |w, (i, &v)| w | (v as u64) << (i as u32 * bits));
            self.push(word, chunk.len() as u32 * bits);
        }
    }

    /// Appends the first `bits` bits of `bytes` (LSB-first), a word at a time.
    pub fn append_bytes(&mut self, bytes: &[u8], bits: usize) {
        let bytes = &bytes[..bits.div_ceil(8)];
        let words = bits / 64;
        self.words.reserve(words + 1);
        for chunk in bytes[..words * 8].chunks_exact(8) {
            self.push(u64::from_le_bytes(chunk.try_into().expect("8 bytes")), 64);
        }
        let rest = bits - words * 64;
        if rest > 0 {
            let mut word = [0u8; 8];
            word[..bytes.len() - words * 8].copy_from_slice(&bytes[words * 8..]);
            self.push(u64::from_le_bytes(word) & ((1u64 << rest) - 1), rest as u32);
        }
    }

    pub fn len_bits(&self) -> usize {
        self.words.len() * 64 + self.filled as usize
    }

    /// The bits of every writer in turn, as bytes (the last one zero-padded).
    pub fn concat<'a>(writers: impl IntoIterator<Item = &'a BitWriter> + Clone) -> Vec<u8> {
        let bits: usize = writers.clone().into_iter().map(BitWriter::len_bits).sum();
        let mut joined = BitWriter { words: Vec::with_capacity(bits / 64 + 1), acc: 0, filled: 0 };
        for w in writers {
            if joined.filled == 0 {
                joined.words.extend_from_slice(&w.words); // aligned: a plain copy
            } else {
                w.words.iter().for_each(|&word| joined.push(word, 64));
            }
            if w.filled > 0 {
                joined.push(w.acc, w.filled);
            }
        }
        let mut bytes: Vec<u8> = Vec::with_capacity(bits.div_ceil(8) + 8);
        joined.words.iter().for_each(|w| bytes.extend_from_slice(&w.to_le_bytes()));
        bytes.extend_from_slice(&joined.acc.to_le_bytes());
        bytes.truncate(bits.div_ceil(8));
        bytes
    }
}

/// Reads an LSB-first bit stream written by `pack` or `BitWriter`, code by code.
pub struct BitReader<'a> {
    bytes: &'a [u8],
    next_byte: usize,
    acc: u64,
    available: u32,
}

impl<'a> BitReader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        BitReader { bytes, next_byte: 0, acc: 0, available: 0 }
    }

    /// A reader whose first bit is bit `bit` of `bytes` (past the end: a reader that returns nothing).
    pub fn at(bytes: &'a [u8], bit: usize) -> Self {
        let mut reader = BitReader { bytes, next_byte: (bit / 8).min(bytes.len()), acc: 0, available: 0 };
        if !bit.is_multiple_of(8) && reader.read((bit % 8) as u32).is_none() {
            reader.next_byte = bytes.len();
        }
        reader
    }

    /// The next `bits` (1..=16) bits, or None past the end of the data.
    #[inline]
    pub fn read(&mut self, bits: u32) -> Option<u16> {
        if self.available < bits {
            self.refill();
            if self.available < bits {
                return None;
            }
        }
        let code = (self.acc & ((1u64 << bits) - 1)) as u16;
        self.acc >>= bits;
        self.available -= bits;
        Some(code)
    }

    /// Fills `out` with the next `out.len()` codes of `bits` (1..=16) bits; false if the data runs out first.
    #[inline]
    pub fn read_into(&mut self, bits: u32, out: &mut [u16]) -> bool {
        let mask = (1u64 << bits) - 1;
        for code in out.iter_mut() {
            if self.available < bits {
                self.refill();
                if self.available < bits {
                    return false;
                }
            }
            *code = (self.acc & mask) as u16;
            self.acc >>= bits;
            self.available -= bits;
        }
        true
    }

    fn refill(&mut self) {
        if let Some(word) = self.bytes.get(self.next_byte..self.next_byte + 4) {
            // Four bytes at once (the common case): at most 16 bits are buffered, so 32 more fit.
            self.acc |= (u32::from_le_bytes(word.try_into().expect("4 bytes")) as u64) << self.available;
            self.available += 32;
            self.next_byte += 4;
        }
        while self.available <= 56 && self.next_byte < self.bytes.len() {
            self.acc |= (self.bytes[self.next_byte] as u64) << self.available;
            self.available += 8;
            self.next_byte += 1;
        }
    }
}

/// Reads codes back in order.
pub struct Unpacker<'a> {
    bytes: &'a [u8],
    bits: u8,
    position: usize,
}

impl<'a> Unpacker<'a> {
    pub fn new(bytes: &'a [u8], bits: u8) -> Self {
        Self { bytes, bits, position: 0 }
    }

    /// The next code, or None past the end of the data.
    pub fn next_code(&mut self) -> Option<u16> {
        let bit = self.position * self.bits as usize;
        let (byte, shift) = (bit / 8, bit % 8);
        if (bit + self.bits as usize).div_ceil(8) > self.bytes.len() {
            return None;
        }
        let mut word = 0u32;
        for (i, b) in self.bytes[byte..(byte + 3).min(self.bytes.len())].iter().enumerate() {
            word |= (*b as u32) << (8 * i);
        }
        self.position += 1;
        Some(((word >> shift) & ((1u32 << self.bits) - 1)) as u16)
    }
}

/// The code at `index` of bytes packed by `pack` at `bits` (at most 16) bits each; None past the end.
pub fn code_at(bytes: &[u8], bits: u8, index: usize) -> Option<u16> {
    let mut unpacker = Unpacker { bytes, bits, position: index };
    unpacker.next_code()
}

pub fn packed_len(count: usize, bits: u8) -> usize {
    (count * bits as usize).div_ceil(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_unpack_to_the_same_integers_at_every_bit_width() {
        for bits in 1..=16u8 {
            let max = if bits == 16 { u16::MAX as u32 } else { (1u32 << bits) - 1 };
            let codes: Vec<u16> = (0..1001u32).map(|i| (i.wrapping_mul(2654435761) % (max + 1)) as u16).collect();
            let packed = pack(codes.iter().copied(), bits);
            assert_eq!(packed.len(), packed_len(codes.len(), bits));
            let long: Vec<u16> = codes.iter().cycle().take(200_003).copied().collect();
            assert_eq!(pack_parallel(&long, bits), pack(long.iter().copied(), bits));
            let mut unpacker = Unpacker::new(&packed, bits);
            let back: Vec<u16> = (0..codes.len()).map(|_| unpacker.next_code().unwrap()).collect();
            assert_eq!(back, codes, "bits {bits}");
        }
    }

    #[test]
    fn bit_writers_join_into_the_bytes_pack_writes() {
        // Three writers of mixed widths and lengths, joined at unaligned bit offsets.
        let widths = [2u32, 8, 3, 16, 4];
        let codes: Vec<(u16, u32)> = (0..5000u32)
            .map(|i| {
                let bits = widths[(i as usize * 7) % widths.len()];
                ((i.wrapping_mul(2654435761) >> 7) as u16 & ((1u32 << bits) - 1) as u16, bits)
            })
            .collect();
        let mut writers = vec![BitWriter::default(), BitWriter::default(), BitWriter::default()];
        for (i, &(code, bits)) in codes.iter().enumerate() {
            writers[if i < 1001 {
                0
            } else if i < 1002 {
                1
            } else {
                2
            }]
            .push(code as u64, bits);
        }
        let bytes = BitWriter::concat(&writers);
        let total: usize = codes.iter().map(|c| c.1 as usize).sum();
        assert_eq!(bytes.len(), total.div_ceil(8));
        let mut reader = BitReader::new(&bytes);
        for &(code, bits) in &codes {
            assert_eq!(reader.read(bits), Some(code));
        }
        // Same-width codes give exactly `pack`'s bytes.
        let same: Vec<u16> = codes.iter().map(|c| c.0 & 3).collect();
        let mut w = BitWriter::default();
        same[..77].iter().for_each(|&c| w.push(c as u64, 2));
        w.push_all(&same[77..], 2);
        assert_eq!(BitWriter::concat([&w]), pack(same.iter().copied(), 2));
        let small: Vec<u8> = same.iter().map(|&c| c as u8).collect();
        let mut w = BitWriter::default();
        w.push_small(&small[..5], 2);
        w.push_small(&small[5..], 2);
        assert_eq!(BitWriter::concat([&w]), pack(same.iter().copied(), 2));
    }
}
