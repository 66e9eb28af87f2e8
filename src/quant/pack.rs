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
}
