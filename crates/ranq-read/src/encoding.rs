//! Compressed leaderboards: gzip or brotli by `Accept-Encoding`, with the expensive part — the
//! entries, nine tenths of a top-100's 4.6 KB — compressed once per snapshot, not per request.
//!
//! An answer is a head that differs per request (`status`, `age_ms`), the entries cut to `limit`,
//! and a short tail. Both formats let a stream be built from independently made pieces, so the
//! head and the tail go out as uncompressed blocks around entries compressed beforehand:
//!
//! - **gzip**: a raw deflate stream of the entries, ended by a sync flush (so it is byte-aligned
//!   and not final), between two stored blocks; the CRC-32 of the whole is combined from the
//!   pieces' CRCs. Back-references in the entries reach only into the entries.
//! - **brotli**: compressed without the static dictionary (whose references are decoded
//!   relative to the stream position, which the splice changes) after the two bytes every head
//!   ends with (`:[`), so the literal contexts and back-references seen when compressing are the
//!   ones the decoder sees; the pieces are that stream's meta-blocks after those two bytes,
//!   between uncompressed meta-blocks, in a stream header written here.
//!
//! Entries are compressed for a few cuts (10, 20, 50, 100 entries, and all of them); a `limit`
//! between cuts sends the largest cut below it compressed and the entries past it uncompressed.
//! Unit tests decode every limit with flate2's and the brotli crate's decoders.

use std::io::Write as _;
use std::sync::OnceLock;

use axum::http::HeaderMap;
use axum::http::header::ACCEPT_ENCODING;
use brotli::enc::BrotliEncoderParams;
use flate2::{Compression, Crc};

/// The entry counts compressed beforehand (besides "all of them").
const CUTS: [usize; 4] = [10, 20, 50, 100];

/// What every head ends with (`…"entries":[`): the two bytes brotli compresses the entries after.
const HEAD_END: &[u8; 2] = b":[";

/// brotli's window: 64 KiB (`WBITS` = 16, one zero bit in the stream header), far more than an
/// answer; and a quality that costs well under a millisecond on a top-100.
const BROTLI_LGWIN: i32 = 16;
const BROTLI_QUALITY: i32 = 5;

/// A content coding the API sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    Gzip,
    Brotli,
}

impl Coding {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Brotli => "br",
        }
    }
}

/// The coding to answer with: brotli or gzip, whichever the client weighs more (brotli on a tie:
/// it is smaller); none when it accepts neither.
pub(crate) fn negotiate(headers: &HeaderMap) -> Option<Coding> {
    let (mut gzip, mut br, mut any) = (None, None, None);
    for value in headers.get_all(ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()) {
        for item in value.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()))
                .next()
                .unwrap_or(1.0);
            match name.as_str() {
                "gzip" | "x-gzip" => gzip = Some(q),
                "br" => br = Some(q),
                "*" => any = Some(q),
                _ => {}
            }
        }
    }
    let (gzip, br) = (gzip.or(any).unwrap_or(0.0), br.or(any).unwrap_or(0.0));
    match (gzip > 0.0, br > 0.0) {
        (_, true) if br >= gzip => Some(Coding::Brotli),
        (true, _) => Some(Coding::Gzip),
        _ => None,
    }
}

/// One cut of the entries, compressed.
#[derive(Debug)]
struct Cut {
    /// Entries in it.
    count: usize,
    /// The compressed piece (for brotli, its meta-blocks; for gzip, deflate blocks).
    bytes: Vec<u8>,
    /// The CRC-32 of the uncompressed entries (gzip only).
    crc: Option<Crc>,
}

/// A snapshot's entries compressed for every cut, in one coding.
#[derive(Debug)]
pub(crate) struct Prepared {
    coding: Coding,
    cuts: Vec<Cut>,
}

/// The compressed pieces of one snapshot, made on first use for each coding.
#[derive(Debug, Default)]
pub(crate) struct Encoded {
    gzip: OnceLock<Prepared>,
    brotli: OnceLock<Prepared>,
}

impl Encoded {
    /// The pieces in `coding` of `entries` (the comma-separated entries, entry `i` ending at
    /// `ends[i]`), compressed now if this is their first use.
    pub(crate) fn get(&self, coding: Coding, entries: &str, ends: &[usize]) -> &Prepared {
        let cell = match coding {
            Coding::Gzip => &self.gzip,
            Coding::Brotli => &self.brotli,
        };
        cell.get_or_init(|| Prepared::new(coding, entries, ends))
    }

    /// What the pieces made so far take on the heap.
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        [&self.gzip, &self.brotli]
            .into_iter()
            .filter_map(OnceLock::get)
            .map(|p| {
                p.cuts.capacity() * std::mem::size_of::<Cut>()
                    + p.cuts.iter().map(|c| c.bytes.capacity()).sum::<usize>()
            })
            .sum()
    }
}

impl Prepared {
    pub(crate) fn new(coding: Coding, entries: &str, ends: &[usize]) -> Self {
        let counts = CUTS.iter().copied().filter(|&c| c < ends.len()).chain((!ends.is_empty()).then_some(ends.len()));
        let cuts = counts
            .map(|count| {
                let raw = &entries.as_bytes()[..ends[count - 1]];
                match coding {
                    Coding::Gzip => {
                        let mut crc = Crc::new();
                        crc.update(raw);
                        Cut { count, bytes: deflate_piece(raw), crc: Some(crc) }
                    }
                    Coding::Brotli => Cut { count, bytes: brotli_piece(raw), crc: None },
                }
            })
            .collect();
        Self { coding, cuts }
    }

    /// The whole answer: `head`, the first `count` entries (`entries`, entry `i` ending at
    /// `ends[i]`) and `tail`, compressed.
    pub(crate) fn answer(&self, head: &[u8], entries: &str, ends: &[usize], count: usize, tail: &[u8]) -> Vec<u8> {
        debug_assert!(head.ends_with(HEAD_END), "the pieces were compressed to follow a head ending in `:[`");
        let cut = self.cuts.iter().rev().find(|c| c.count <= count);
        let done = cut.map_or(0, |c| ends[c.count - 1]);
        let end = count.checked_sub(1).map_or(0, |last| ends[last]);
        let rest = &entries.as_bytes()[done..end];
        let piece = cut.map_or(&[][..], |c| &c.bytes[..]);
        match self.coding {
            Coding::Gzip => gzip_answer(head, piece, cut.and_then(|c| c.crc.as_ref()), rest, tail),
            Coding::Brotli => brotli_answer(head, piece, rest, tail),
        }
    }
}

/// A whole body compressed as is: for answers with no snapshot kept in memory to prepare.
pub(crate) fn compress(coding: Coding, body: &[u8]) -> Vec<u8> {
    let out = Vec::with_capacity(body.len() / 2 + 64);
    match coding {
        Coding::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(out, Compression::fast());
            let _ = encoder.write_all(body);
            encoder.finish().unwrap_or_default()
        }
        Coding::Brotli => {
            let mut encoder = brotli::CompressorWriter::new(out, 4096, 1, 16);
            let _ = encoder.write_all(body);
            encoder.into_inner()
        }
    }
}

/// `raw` as raw deflate blocks, byte-aligned and not final: the encoder's flush is a sync flush.
fn deflate_piece(raw: &[u8]) -> Vec<u8> {
    let mut encoder =
        flate2::write::DeflateEncoder::new(Vec::with_capacity(raw.len() / 2 + 64), Compression::default());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(raw);
    let _ = encoder.flush();
    encoder.get_ref().clone()
}

/// Deflate stored blocks holding `data` (none for no data), final or not.
fn stored_blocks(out: &mut Vec<u8>, data: &[u8], last: bool) {
    let chunks: Vec<&[u8]> = if data.is_empty() { vec![&[][..]] } else { data.chunks(usize::from(u16::MAX)).collect() };
    let n = chunks.len();
    for (i, chunk) in chunks.into_iter().enumerate() {
        if chunk.is_empty() && !last {
            continue;
        }
        let len = u16::try_from(chunk.len()).unwrap_or(u16::MAX);
        out.push(u8::from(last && i + 1 == n)); // BFINAL, BTYPE 00 (stored), then padding
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
}

fn gzip_answer(head: &[u8], piece: &[u8], piece_crc: Option<&Crc>, rest: &[u8], tail: &[u8]) -> Vec<u8> {
    // ID1 ID2, CM = deflate, no flags, no mtime, no extra flags, OS unknown.
    const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let mut out = Vec::with_capacity(HEADER.len() + head.len() + piece.len() + rest.len() + tail.len() + 40);
    out.extend_from_slice(&HEADER);
    stored_blocks(&mut out, head, false);
    out.extend_from_slice(piece);
    stored_blocks(&mut out, rest, false);
    stored_blocks(&mut out, tail, true);
    let mut crc = Crc::new();
    crc.update(head);
    if let Some(piece_crc) = piece_crc {
        crc.combine(piece_crc);
    }
    crc.update(rest);
    crc.update(tail);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&crc.amount().to_le_bytes());
    out
}

/// `raw`'s brotli meta-blocks as compressed after [`HEAD_END`], byte-aligned and not last.
fn brotli_piece(raw: &[u8]) -> Vec<u8> {
    let params = BrotliEncoderParams {
        quality: BROTLI_QUALITY,
        lgwin: BROTLI_LGWIN,
        use_dictionary: false,
        mode: brotli::enc::backward_references::BrotliEncoderMode::BROTLI_MODE_TEXT,
        ..BrotliEncoderParams::default()
    };
    let mut encoder = brotli::CompressorWriter::with_params(Vec::with_capacity(raw.len() / 2 + 64), 4096, &params);
    // A flush ends a meta-block on a byte boundary: what precedes is the prefix's.
    let _ = encoder.write_all(HEAD_END);
    let _ = encoder.flush();
    let start = encoder.get_ref().len();
    let _ = encoder.write_all(raw);
    let _ = encoder.flush();
    let end = encoder.get_ref().len();
    let stream = encoder.into_inner();
    stream[start..end].to_vec()
}

/// The brotli header of an uncompressed meta-block of `len` bytes (1 to 65536): ISLAST 0,
/// MNIBBLES 4, MLEN-1, ISUNCOMPRESSED 1, after `lead` bits already used in the first byte;
/// padded to the byte boundary.
fn uncompressed_header(out: &mut Vec<u8>, lead: (u32, u32), len: usize) {
    let (mut bits, mut used) = lead;
    let mlen = u32::try_from(len - 1).unwrap_or(0xffff) & 0xffff;
    // ISLAST = 0 (1 bit), MNIBBLES - 4 = 0 (2 bits), MLEN - 1 (16 bits), ISUNCOMPRESSED = 1.
    bits |= mlen << (used + 3);
    used += 3 + 16;
    bits |= 1 << used;
    used += 1;
    for i in 0..used.div_ceil(8) {
        out.push((bits >> (8 * i)) as u8);
    }
}

/// Uncompressed meta-blocks holding `data`; `lead` bits (the stream header) come first.
fn uncompressed_blocks(out: &mut Vec<u8>, data: &[u8], mut lead: (u32, u32)) {
    for chunk in data.chunks(1 << 16) {
        uncompressed_header(out, lead, chunk.len());
        out.extend_from_slice(chunk);
        lead = (0, 0);
    }
}

fn brotli_answer(head: &[u8], piece: &[u8], rest: &[u8], tail: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.len() + piece.len() + rest.len() + tail.len() + 16);
    // The stream header, WBITS = 16, is a single 0 bit; the head (never empty) follows it.
    uncompressed_blocks(&mut out, head, (0, 1));
    out.extend_from_slice(piece);
    uncompressed_blocks(&mut out, rest, (0, 0));
    uncompressed_blocks(&mut out, tail, (0, 0));
    out.push(0b11); // ISLAST, ISLASTEMPTY
    out
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn entries(n: usize) -> (String, Vec<usize>) {
        let mut json = String::new();
        let mut ends = Vec::new();
        for rank in 1..=n {
            if rank > 1 {
                json.push(',');
            }
            let member = (rank * 7919) % 100_003;
            json.push_str(&format!(r#"{{"rank":{rank},"member":{member},"score":{}}}"#, 10_000 - rank * 3));
            ends.push(json.len());
        }
        (json, ends)
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).expect("valid gzip");
        out
    }

    fn unbrotli(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        brotli::Decompressor::new(bytes, 4096).read_to_end(&mut out).expect("valid brotli");
        out
    }

    #[test]
    fn every_limit_decodes_to_the_plain_answer_in_both_codings() {
        let head =
            br#"{"group":7,"status":"FRESH","version":1,"computed_at":"2026-01-01T00:00:00Z","age_ms":12,"entries":["#;
        for tail in [&b"]}"[..], br#"],"error":"refreshes keep failing","quarantined":true}"#] {
            for n in [0, 1, 9, 10, 11, 37, 100] {
                let (json, ends) = entries(n);
                for coding in [Coding::Gzip, Coding::Brotli] {
                    let prepared = Prepared::new(coding, &json, &ends);
                    for count in 0..=n {
                        let end = count.checked_sub(1).map_or(0, |last| ends[last]);
                        let plain = [&head[..], &json.as_bytes()[..end], tail].concat();
                        let body = prepared.answer(head, &json, &ends, count, tail);
                        let decoded = match coding {
                            Coding::Gzip => gunzip(&body),
                            Coding::Brotli => unbrotli(&body),
                        };
                        assert_eq!(
                            String::from_utf8_lossy(&decoded),
                            String::from_utf8_lossy(&plain),
                            "{coding:?}, {n} entries, {count} served"
                        );
                        if count == n && n == 100 {
                            assert!(
                                body.len() * 2 < plain.len(),
                                "{coding:?}: {} of {} bytes",
                                body.len(),
                                plain.len()
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_whole_body_compresses_and_decodes() {
        let body = entries(100).0.into_bytes();
        assert_eq!(gunzip(&compress(Coding::Gzip, &body)), body);
        assert_eq!(unbrotli(&compress(Coding::Brotli, &body)), body);
    }

    #[test]
    fn the_client_weighs_the_codings() {
        let ask = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(ACCEPT_ENCODING, value.parse().expect("header"));
            negotiate(&headers)
        };
        assert_eq!(ask("gzip, deflate, br"), Some(Coding::Brotli));
        assert_eq!(ask("gzip"), Some(Coding::Gzip));
        assert_eq!(ask("br;q=0.5, gzip"), Some(Coding::Gzip));
        assert_eq!(ask("br;q=0, gzip;q=0"), None);
        assert_eq!(ask("identity"), None);
        assert_eq!(ask("*"), Some(Coding::Brotli));
        assert_eq!(ask("*;q=0.1, gzip;q=0.2"), Some(Coding::Gzip));
        assert_eq!(negotiate(&HeaderMap::new()), None);
    }
}
