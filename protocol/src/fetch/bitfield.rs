//! Chunk availability bitfields: which chunks of one release a node holds.
//!
//! Bit `i` stands for chunk `i` of the release's chunk list. On the wire (the
//! `bitfield` of [`crate::wire::Request::Have`] and [`crate::wire::Response::Have`])
//! a bitfield of `n` bits is `ceil(n / 8)` bytes, most significant bit first
//! within each byte, and the pad bits after bit `n - 1` must be zero so that
//! every bitfield has exactly one encoding. A peer's bitfield is hostile input:
//! [`Bitfield::from_bytes`] checks the bit count against
//! [`MAX_CHUNKS_PER_RELEASE`] and the byte length before keeping anything.

use crate::limits::MAX_CHUNKS_PER_RELEASE;
use std::fmt;
use thiserror::Error;

/// A fixed-length set of chunk indices, stored in its wire layout.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Bitfield {
    /// Number of bits; indices `0..len` are valid.
    len: u32,
    /// `ceil(len / 8)` bytes, MSB first, pad bits always zero.
    bytes: Vec<u8>,
}

/// A bitfield received from a peer could not be read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BitfieldError {
    /// The release has more chunks than any release may have.
    #[error("a bitfield of {bits} bits is over the limit of {max} chunks per release")]
    TooManyBits {
        /// Bits asked for.
        bits: u32,
        /// The limit, [`MAX_CHUNKS_PER_RELEASE`].
        max: u32,
    },
    /// The byte count is not `ceil(bits / 8)`.
    #[error("a bitfield of {bits} bits must be {expected} bytes, but {got} bytes were received")]
    WrongLength {
        /// Bits the release has.
        bits: u32,
        /// Bytes received.
        got: usize,
        /// Bytes required.
        expected: usize,
    },
    /// A bit past the last chunk is set, so the encoding is not canonical.
    #[error("the pad bits after bit {bits} of the last bitfield byte are not all zero")]
    NonzeroPadding {
        /// Bits the release has.
        bits: u32,
    },
}

/// Bytes needed for `bits` bits.
fn byte_len(bits: u32) -> usize {
    (bits as usize).div_ceil(8)
}

/// Mask of the valid bits in the last byte of a `bits`-bit field (all ones if it is full).
fn last_byte_mask(bits: u32) -> u8 {
    match bits % 8 {
        0 => 0xff,
        used => 0xffu8 << (8 - used),
    }
}

impl Bitfield {
    /// An all-zero bitfield of `len` bits. `len` comes from a chunk list that
    /// [`crate::chunk::ChunkList::decode`] has already bounded; the memory used
    /// is `ceil(len / 8)` bytes.
    pub fn new(len: u32) -> Bitfield {
        Bitfield {
            len,
            bytes: vec![0; byte_len(len)],
        }
    }

    /// A bitfield of `len` bits with every bit set (a node holding the whole release).
    pub fn full(len: u32) -> Bitfield {
        let mut bytes = vec![0xff; byte_len(len)];
        if let Some(last) = bytes.last_mut() {
            *last &= last_byte_mask(len);
        }
        Bitfield { len, bytes }
    }

    /// Reads a peer's bitfield for a release of `len` chunks, refusing a bit
    /// count over the limit, a wrong byte count and set pad bits.
    pub fn from_bytes(bytes: &[u8], len: u32) -> Result<Bitfield, BitfieldError> {
        if len > MAX_CHUNKS_PER_RELEASE {
            return Err(BitfieldError::TooManyBits {
                bits: len,
                max: MAX_CHUNKS_PER_RELEASE,
            });
        }
        let expected = byte_len(len);
        if bytes.len() != expected {
            return Err(BitfieldError::WrongLength {
                bits: len,
                got: bytes.len(),
                expected,
            });
        }
        if let Some(last) = bytes.last() {
            if last & !last_byte_mask(len) != 0 {
                return Err(BitfieldError::NonzeroPadding { bits: len });
            }
        }
        Ok(Bitfield {
            len,
            bytes: bytes.to_vec(),
        })
    }

    /// The wire encoding: `ceil(len / 8)` bytes, MSB first, zero padding.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.bytes.clone()
    }

    /// The wire encoding, borrowed.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Number of bits (chunks in the release).
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether the bitfield has no bits at all (a release of zero chunks).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Byte position and bit mask of `index`, or `None` past the end.
    fn locate(&self, index: u32) -> Option<(usize, u8)> {
        (index < self.len).then(|| ((index / 8) as usize, 0x80u8 >> (index % 8)))
    }

    /// Whether bit `index` is set; bits past the end read as unset.
    pub fn get(&self, index: u32) -> bool {
        self.locate(index)
            .and_then(|(byte, mask)| self.bytes.get(byte).map(|b| b & mask != 0))
            .unwrap_or(false)
    }

    /// Sets bit `index`. Returns `true` if the bit was unset before; an index
    /// past the end changes nothing and returns `false`, because indices often
    /// come from peers.
    pub fn set(&mut self, index: u32) -> bool {
        self.write(index, true)
    }

    /// Clears bit `index`. Returns `true` if the bit was set before; an index
    /// past the end changes nothing and returns `false`.
    pub fn clear(&mut self, index: u32) -> bool {
        self.write(index, false)
    }

    /// Writes bit `index`; returns whether it changed.
    fn write(&mut self, index: u32, value: bool) -> bool {
        let Some((byte, mask)) = self.locate(index) else {
            return false;
        };
        let Some(b) = self.bytes.get_mut(byte) else {
            return false;
        };
        let was = *b & mask != 0;
        if value {
            *b |= mask;
        } else {
            *b &= !mask;
        }
        was != value
    }

    /// Number of set bits.
    pub fn count(&self) -> u32 {
        self.bytes.iter().map(|b| b.count_ones()).sum()
    }

    /// Whether every bit is set (an empty bitfield is full: nothing is missing).
    pub fn is_full(&self) -> bool {
        self.count() == self.len
    }

    /// The indices of the set bits, in increasing order.
    pub fn ones(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(|&i| self.get(i))
    }
}

impl fmt::Debug for Bitfield {
    /// A summary: the bytes of a large release would drown any log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bitfield({}/{} set)", self.count(), self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    mod layout {
        use super::*;

        #[test]
        fn bit_zero_is_the_most_significant_bit_of_byte_zero() {
            let mut b = Bitfield::new(10);
            b.set(0);
            b.set(9);
            assert_eq!(b.to_bytes(), vec![0b1000_0000, 0b0100_0000]);
        }

        #[test]
        fn full_leaves_the_padding_zero() {
            assert_eq!(Bitfield::full(10).to_bytes(), vec![0xff, 0b1100_0000]);
            assert_eq!(Bitfield::full(16).to_bytes(), vec![0xff, 0xff]);
            assert_eq!(Bitfield::full(0).to_bytes(), Vec::<u8>::new());
        }

        #[test]
        fn byte_length_is_bits_rounded_up() {
            for (bits, bytes) in [(0, 0), (1, 1), (8, 1), (9, 2), (16, 2), (17, 3)] {
                assert_eq!(Bitfield::new(bits).to_bytes().len(), bytes, "{bits} bits");
            }
        }
    }

    mod bits {
        use super::*;

        #[test]
        fn set_get_clear_report_changes() {
            let mut b = Bitfield::new(12);
            assert!(!b.get(5));
            assert!(b.set(5));
            assert!(!b.set(5), "setting twice changes nothing");
            assert!(b.get(5));
            assert!(b.clear(5));
            assert!(!b.clear(5));
            assert!(!b.get(5));
        }

        #[test]
        fn out_of_range_indices_are_ignored() {
            let mut b = Bitfield::new(10);
            assert!(!b.set(10));
            assert!(!b.set(u32::MAX));
            assert!(!b.get(10));
            assert!(!b.clear(11));
            assert_eq!(b.count(), 0);
            assert_eq!(b.to_bytes(), vec![0, 0], "padding stays zero");
        }

        #[test]
        fn count_and_is_full() {
            let mut b = Bitfield::new(3);
            assert!(!b.is_full());
            b.set(0);
            b.set(2);
            assert_eq!(b.count(), 2);
            assert!(!b.is_full());
            b.set(1);
            assert!(b.is_full());
            assert!(Bitfield::new(0).is_full());
            assert!(Bitfield::full(9).is_full());
        }

        #[test]
        fn ones_lists_set_indices_in_order() {
            let mut b = Bitfield::new(20);
            for i in [19, 3, 8] {
                b.set(i);
            }
            assert_eq!(b.ones().collect::<Vec<_>>(), vec![3, 8, 19]);
        }
    }

    mod decoding {
        use super::*;

        #[test]
        fn refuses_wrong_byte_counts() {
            assert_eq!(
                Bitfield::from_bytes(&[0, 0], 8),
                Err(BitfieldError::WrongLength {
                    bits: 8,
                    got: 2,
                    expected: 1
                })
            );
            assert!(matches!(
                Bitfield::from_bytes(&[0], 9),
                Err(BitfieldError::WrongLength { expected: 2, .. })
            ));
            assert!(matches!(
                Bitfield::from_bytes(&[0], 0),
                Err(BitfieldError::WrongLength { expected: 0, .. })
            ));
        }

        #[test]
        fn refuses_set_padding() {
            assert_eq!(
                Bitfield::from_bytes(&[0xff, 0b1110_0000], 10),
                Err(BitfieldError::NonzeroPadding { bits: 10 })
            );
            assert_eq!(
                Bitfield::from_bytes(&[0b0000_0001], 7),
                Err(BitfieldError::NonzeroPadding { bits: 7 })
            );
            assert!(Bitfield::from_bytes(&[0xff, 0b1100_0000], 10).is_ok());
        }

        #[test]
        fn refuses_more_bits_than_a_release_may_have() {
            let bits = MAX_CHUNKS_PER_RELEASE + 1;
            let bytes = vec![0; byte_len(bits)];
            assert_eq!(
                Bitfield::from_bytes(&bytes, bits),
                Err(BitfieldError::TooManyBits {
                    bits,
                    max: MAX_CHUNKS_PER_RELEASE
                })
            );
            let at_limit = vec![0; byte_len(MAX_CHUNKS_PER_RELEASE)];
            assert!(Bitfield::from_bytes(&at_limit, MAX_CHUNKS_PER_RELEASE).is_ok());
        }

        #[test]
        fn errors_are_sentences_naming_the_problem() {
            let e = Bitfield::from_bytes(&[0, 0, 0], 9).unwrap_err().to_string();
            assert!(
                e.contains("9 bits") && e.contains("2 bytes") && e.contains("3 bytes"),
                "{e}"
            );
        }
    }

    proptest! {
        #[test]
        fn wire_round_trip(len in 0u32..200, picks in proptest::collection::vec(any::<u32>(), 0..64)) {
            let mut b = Bitfield::new(len);
            for p in &picks {
                if len > 0 {
                    b.set(p % len);
                }
            }
            let back = Bitfield::from_bytes(&b.to_bytes(), len).unwrap();
            prop_assert_eq!(&back, &b);
            prop_assert_eq!(back.count() as usize, back.ones().count());
        }

        #[test]
        fn decoding_accepts_exactly_the_canonical_encodings(len in 0u32..64, bytes in proptest::collection::vec(any::<u8>(), 0..10)) {
            match Bitfield::from_bytes(&bytes, len) {
                Ok(b) => prop_assert_eq!(b.to_bytes(), bytes),
                Err(BitfieldError::WrongLength { .. }) => prop_assert_ne!(bytes.len(), byte_len(len)),
                Err(BitfieldError::NonzeroPadding { .. }) => {
                    let last = bytes.last().copied().unwrap_or(0);
                    prop_assert_ne!(last & !last_byte_mask(len), 0);
                }
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
        }
    }
}
