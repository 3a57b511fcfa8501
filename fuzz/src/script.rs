//! The byte format the structured fuzz targets read their inputs in, and its
//! writer for the seed generator.
//!
//! libFuzzer hands out flat bytes; `trust_bundle` and `node_inputs` read them
//! as a short script: single bytes for choices and time steps, and
//! [`Payload`]s for message bodies. A payload is either bytes from the input
//! (length-prefixed), one of a fixed table of valid messages the target built
//! at start-up ("canned"), a canned message with one byte changed, or the
//! answer an honest peer would give. Canned and honest payloads let a few
//! bytes stand for a signed document or a 64 KiB chunk, so the fuzzer gets
//! past signatures and hashes and spends its time on the state machines
//! behind them. Reading never fails: past the end every byte reads as 0 and
//! [`Reader::is_empty`] tells the script to stop.

/// Milliseconds per unit for each of the eight time scales of [`advance_ms`]:
/// 1 ms, 100 ms, 1 s, 1 min, 1 h, 1 day, 30 days, 365 days. Up to 31 units of
/// each reach every deadline the protocol has (request timeouts, heartbeats,
/// bake times, document expiries of a day to a year) in one or two steps.
const SCALES_MS: [u64; 8] = [
    1,
    100,
    1_000,
    60_000,
    3_600_000,
    86_400_000,
    30 * 86_400_000,
    365 * 86_400_000,
];

/// The time step a byte stands for: the low five bits count units of the
/// scale named by the high three bits (see `SCALES_MS`).
pub fn advance_ms(code: u8) -> u64 {
    u64::from(code & 0x1f) * SCALES_MS[usize::from(code >> 5)]
}

/// The time-step byte for `units` of scale `scale` (both masked into range).
pub fn time_code(scale: u8, units: u8) -> u8 {
    ((scale & 0x07) << 5) | (units & 0x1f)
}

/// Where a message body comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// These bytes.
    Raw(Vec<u8>),
    /// Entry `index` (modulo the table length) of the target's table of valid messages.
    Canned(u8),
    /// A canned entry with the byte at `at` (modulo its length) XORed with `xor`.
    Flipped {
        /// Table entry.
        index: u8,
        /// Byte position.
        at: u16,
        /// Bits to flip.
        xor: u8,
    },
    /// What an honest peer would send here; each target says what that is.
    Honest,
}

/// Tags of the payload kinds on the wire (read modulo 4).
const TAG_RAW: u8 = 0;
const TAG_CANNED: u8 = 1;
const TAG_FLIPPED: u8 = 2;
const TAG_HONEST: u8 = 3;

impl Payload {
    /// The body: raw bytes as they are, canned ones from `table`, honest ones from `honest`.
    pub fn resolve(&self, table: &[Vec<u8>], honest: impl FnOnce() -> Vec<u8>) -> Vec<u8> {
        let entry = |i: u8| {
            if table.is_empty() {
                Vec::new()
            } else {
                table[usize::from(i) % table.len()].clone()
            }
        };
        match self {
            Payload::Raw(b) => b.clone(),
            Payload::Canned(i) => entry(*i),
            Payload::Flipped { index, at, xor } => {
                let mut b = entry(*index);
                if !b.is_empty() {
                    let n = b.len();
                    b[usize::from(*at) % n] ^= xor;
                }
                b
            }
            Payload::Honest => honest(),
        }
    }
}

/// Reads script bytes; past the end, every read gives zeros.
#[derive(Debug)]
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over the whole input.
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data }
    }

    /// Whether everything has been read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte, or 0 past the end.
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// The next two bytes, little-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// A fixed-size array, zero-padded at the end of the input.
    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let got = self.bytes(N);
        out[..got.len()].copy_from_slice(got);
        out
    }

    /// A [`Payload`]: a tag byte, then a u16 length and the bytes (raw), an index
    /// byte (canned), an index byte, u16 position and XOR byte (flipped), or nothing (honest).
    pub fn payload(&mut self) -> Payload {
        match self.u8() % 4 {
            TAG_RAW => {
                let len = usize::from(self.u16());
                Payload::Raw(self.bytes(len).to_vec())
            }
            TAG_CANNED => Payload::Canned(self.u8()),
            TAG_FLIPPED => Payload::Flipped {
                index: self.u8(),
                at: self.u16(),
                xor: self.u8(),
            },
            _ => Payload::Honest,
        }
    }
}

/// Writes script bytes; the inverse of [`Reader`], for seeds and tests.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty script.
    pub fn new() -> Self {
        Writer::default()
    }

    /// The bytes written.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }

    /// Appends one byte.
    pub fn u8(&mut self, b: u8) -> &mut Self {
        self.buf.push(b);
        self
    }

    /// Appends a little-endian u16.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends bytes as they are.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }

    /// Appends a payload. Raw payloads longer than `u16::MAX` cannot be
    /// written; they are cut there (seeds never need that much).
    pub fn payload(&mut self, p: &Payload) -> &mut Self {
        match p {
            Payload::Raw(b) => {
                let len = u16::try_from(b.len()).unwrap_or(u16::MAX);
                self.u8(TAG_RAW).u16(len).bytes(&b[..usize::from(len)])
            }
            Payload::Canned(i) => self.u8(TAG_CANNED).u8(*i),
            Payload::Flipped { index, at, xor } => {
                self.u8(TAG_FLIPPED).u8(*index).u16(*at).u8(*xor)
            }
            Payload::Honest => self.u8(TAG_HONEST),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        let all = [
            Payload::Raw(b"abc".to_vec()),
            Payload::Raw(Vec::new()),
            Payload::Canned(7),
            Payload::Flipped {
                index: 2,
                at: 300,
                xor: 0x40,
            },
            Payload::Honest,
        ];
        let mut w = Writer::new();
        for p in &all {
            w.payload(p);
        }
        let bytes = w.finish();
        let mut r = Reader::new(&bytes);
        for p in &all {
            assert_eq!(&r.payload(), p);
        }
        assert!(r.is_empty());
    }

    #[test]
    fn reading_past_the_end_gives_zeros_and_short_raw_payloads() {
        let mut r = Reader::new(&[TAG_RAW, 10, 0, 1, 2]);
        assert_eq!(r.payload(), Payload::Raw(vec![1, 2]));
        assert!(r.is_empty());
        assert_eq!(r.u16(), 0);
        assert_eq!(r.array::<3>(), [0; 3]);
    }

    #[test]
    fn resolve_uses_the_table_modulo_its_length() {
        let table = vec![b"ab".to_vec(), b"cd".to_vec()];
        assert_eq!(Payload::Canned(3).resolve(&table, Vec::new), b"cd");
        let flipped = Payload::Flipped {
            index: 0,
            at: 3,
            xor: 1,
        };
        assert_eq!(flipped.resolve(&table, Vec::new), b"ac");
        assert_eq!(Payload::Honest.resolve(&table, || b"h".to_vec()), b"h");
        assert!(Payload::Canned(0).resolve(&[], Vec::new).is_empty());
    }

    #[test]
    fn time_codes_cover_a_millisecond_to_decades() {
        assert_eq!(advance_ms(time_code(0, 0)), 0);
        assert_eq!(advance_ms(time_code(0, 1)), 1);
        assert_eq!(advance_ms(time_code(3, 2)), 120_000);
        assert_eq!(advance_ms(0xff), 31 * 365 * 86_400_000);
    }
}
