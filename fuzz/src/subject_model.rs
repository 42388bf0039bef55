//! The subject line (spec section 5) read back: `KEY=value` pairs for C,
//! ST, L, O, OU, CN in that order, joined by `, `, where inside a value
//! each of `,` `=` `+` `<` `>` `#` `\` and newline is preceded by a
//! backslash, and leading and trailing spaces are gone; a value that
//! cannot be decoded is written `<invalid>`, unescaped.

pub const KEYS: [&str; 6] = ["C", "ST", "L", "O", "OU", "CN"];

pub fn is_special(c: char) -> bool {
    matches!(c, ',' | '=' | '+' | '<' | '>' | '#' | '\\' | '\n')
}

/// Whether a decoded value is written (else `KEY=<invalid>`): no NUL, no
/// noncharacter (U+FDD0..U+FDEF, U+xFFFE, U+xFFFF), as BearSSL decides.
pub fn decodable(value: &str) -> bool {
    value.chars().all(|c| {
        let c = u32::from(c);
        c != 0 && !(0xfdd0..=0xfdef).contains(&c) && (c & 0xffff) < 0xfffe
    })
}

/// The value as decoded: byte order marks in front are dropped.
pub fn decoded(value: &str) -> &str {
    value.trim_start_matches('\u{feff}')
}

/// The expected rendering of one value, from the spec's words.
pub fn render(value: &str) -> String {
    let mut out = String::new();
    for c in value.trim_matches(' ').chars() {
        if is_special(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Parses a subject line back into (key, unescaped value) pairs, None for
/// a value written `<invalid>`, or says which rule it breaks.
pub fn parse(line: &str) -> Result<Vec<(String, Option<String>)>, String> {
    let mut pairs = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut key = String::new();
        loop {
            match chars.next() {
                Some('=') => break,
                Some(c) if c.is_ascii_uppercase() => key.push(c),
                Some(c) => return Err(format!("{c:?} in an attribute name")),
                None => return Err("attribute without '='".into()),
            }
        }
        let mut value = String::new();
        let mut more = false;
        let rest: String = chars.clone().collect();
        if rest == "<invalid>" || rest.starts_with("<invalid>, ") {
            chars.nth("<invalid>".len() - 1);
            more = chars.next().is_some();
            chars.next();
            pairs.push((key, None));
            if !more {
                break;
            }
            continue;
        }
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(e) if is_special(e) => value.push(e),
                    Some(e) => return Err(format!("backslash before {e:?}")),
                    None => return Err("trailing backslash".into()),
                },
                ',' => {
                    if chars.next() != Some(' ') {
                        return Err("separator ',' without ' '".into());
                    }
                    more = true;
                    break;
                }
                c if is_special(c) => return Err(format!("unescaped {c:?} in a value")),
                '\0' => return Err("NUL in a value".into()),
                c => value.push(c),
            }
        }
        if value.starts_with(' ') || value.ends_with(' ') {
            return Err(format!("value {value:?} not trimmed"));
        }
        pairs.push((key, Some(value)));
        if !more {
            break;
        }
    }
    let mut last = None;
    for (key, _) in &pairs {
        let Some(pos) = KEYS.iter().position(|k| k == key) else {
            return Err(format!("unexpected attribute {key}"));
        };
        if last.is_some_and(|l| pos <= l) {
            return Err(format!("{key} out of order or repeated"));
        }
        last = Some(pos);
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_and_parse_agree() {
        let v = " a,b=c+d<e>f#g\\h\ni ";
        let line = format!("C=FR, CN={}", render(v));
        assert_eq!(
            parse(&line).unwrap(),
            vec![
                ("C".into(), Some("FR".into())),
                ("CN".into(), Some(v.trim().into()))
            ]
        );
        assert_eq!(
            parse("O=<invalid>, CN=<invalid>").unwrap(),
            vec![("O".into(), None), ("CN".into(), None)]
        );
        assert!(parse("CN=<invalid>x").is_err());
        assert!(parse("CN=<invalid>,O=x").is_err());
        assert!(parse("CN=a,b").is_err());
        assert!(parse("CN=a, O=b").is_err());
        assert!(parse("CN=a=b").is_err());
    }
}
