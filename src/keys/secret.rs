//! Secrets in memory: zeroizing buffers, filled without leaving copies
//! behind in freed memory.

use std::fmt;

use anyhow::{Result, anyhow, bail};
use tokio::io::{AsyncRead, AsyncReadExt};
use zeroize::Zeroizing;

/// A secret's bytes, zeroed when dropped. Its Debug shows only the length.
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    #[cfg(test)]
    pub fn from_slice(b: &[u8]) -> Self {
        Secret(Zeroizing::new(b.to_vec()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// Reads everything from `r` into a secret. The buffer grows by copying into
/// a bigger zeroizing one, so no stale copy is left in freed memory.
pub async fn read_secret<R: AsyncRead + Unpin>(mut r: R) -> std::io::Result<Secret> {
    let mut buf = Zeroizing::new(Vec::with_capacity(4096));
    let mut chunk = Zeroizing::new([0u8; 8192]);
    loop {
        let n = r.read(&mut chunk[..]).await?;
        if n == 0 {
            break;
        }
        if buf.len() + n > buf.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity((buf.capacity() * 2).max(buf.len() + n)));
            bigger.extend_from_slice(&buf);
            buf = bigger;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(Secret(buf))
}

/// Decodes one JSON string literal (quotes included) into a secret, without
/// intermediate copies. Errors never include the text.
///
/// Hand-written on purpose: serde_json unescapes into a scratch buffer of
/// its own, which is freed without being zeroed.
pub fn json_string(raw: &str) -> Result<Secret> {
    let b = raw.as_bytes();
    if b.len() < 2 || b[0] != b'"' || b[b.len() - 1] != b'"' {
        bail!("not a string");
    }
    let body = &b[1..b.len() - 1];
    let mut out = Zeroizing::new(Vec::with_capacity(body.len()));
    let mut i = 0;
    let hex4 = |i: usize| -> Result<u32> {
        let h = body
            .get(i..i + 4)
            .ok_or_else(|| anyhow!("truncated \\u escape"))?;
        let s = std::str::from_utf8(h).map_err(|_| anyhow!("bad \\u escape"))?;
        u32::from_str_radix(s, 16).map_err(|_| anyhow!("bad \\u escape"))
    };
    while i < body.len() {
        let c = body[i];
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let e = *body.get(i + 1).ok_or_else(|| anyhow!("truncated escape"))?;
        i += 2;
        let simple = match e {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'b' => Some(8),
            b'f' => Some(12),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'u' => None,
            _ => bail!("bad escape"),
        };
        if let Some(s) = simple {
            out.push(s);
            continue;
        }
        let mut cp = hex4(i)?;
        i += 4;
        if (0xD800..0xDC00).contains(&cp) {
            if body.get(i..i + 2) != Some(b"\\u") {
                bail!("lone surrogate");
            }
            let lo = hex4(i + 2)?;
            if !(0xDC00..0xE000).contains(&lo) {
                bail!("bad surrogate pair");
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            i += 6;
        }
        let ch = char::from_u32(cp).ok_or_else(|| anyhow!("bad code point"))?;
        let mut tmp = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
    }
    Ok(Secret(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_decode() {
        let s = json_string(r#""a\nb\"c\\ \u00e9 \ud83d\ude00 é/""#).unwrap();
        assert_eq!(s.bytes(), "a\nb\"c\\ é 😀 é/".as_bytes());
        assert!(json_string("\"\\ud83d\"").is_err());
        assert!(json_string("3").is_err());
    }

    #[tokio::test]
    async fn secrets_are_read_whole_and_never_shown() {
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let s = read_secret(&data[..]).await.unwrap();
        assert_eq!(s.bytes(), &data[..]);
        assert_eq!(format!("{s:?}"), "Secret(20000 bytes)");
    }
}
