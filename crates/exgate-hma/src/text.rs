//! Bytes of a pasted or redirected file to text: UTF-16 with a byte order mark (what Windows
//! PowerShell's `>` writes), UTF-8 with or without one; line ends of any kind.

/// Decodes `bytes` to text. UTF-16 (little or big endian) needs its byte order mark; anything else
/// is read as UTF-8, invalid sequences replaced (a report never refuses a paste over one byte).
pub fn decode(bytes: &[u8]) -> String {
    match bytes {
        [0xFF, 0xFE, rest @ ..] => utf16(rest, u16::from_le_bytes),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, u16::from_be_bytes),
        [0xEF, 0xBB, 0xBF, rest @ ..] => String::from_utf8_lossy(rest).into_owned(),
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

fn utf16(bytes: &[u8], unit: fn([u8; 2]) -> u16) -> String {
    let units = bytes.chunks_exact(2).map(|c| unit([c[0], c[1]]));
    char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

/// The lines of `text`, numbered from 1, without their line ends (`\r\n`, `\n` or `\r`).
pub fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split('\n')
        .flat_map(|l| {
            let l = l.strip_suffix('\r').unwrap_or(l);
            // A lone CR (old Mac line ends) also ends a line.
            l.split('\r')
        })
        .enumerate()
        .map(|(i, l)| (i + 1, l))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_with_a_bom_and_crlf() {
        let mut bytes = vec![0xFF, 0xFE];
        for u in "Server : EX1\r\nOAuthAuthentication : True\r\n".encode_utf16() {
            bytes.extend(u.to_le_bytes());
        }
        let text = decode(&bytes);
        let got: Vec<_> = lines(&text).collect();
        assert_eq!(got[0], (1, "Server : EX1"));
        assert_eq!(got[1], (2, "OAuthAuthentication : True"));
    }

    #[test]
    fn big_endian_and_utf8_bom() {
        let mut bytes = vec![0xFE, 0xFF];
        for u in "Name : EvoSts".encode_utf16() {
            bytes.extend(u.to_be_bytes());
        }
        assert_eq!(decode(&bytes), "Name : EvoSts");
        assert_eq!(decode(b"\xEF\xBB\xBFx"), "x");
    }
}
