//! Text from peers, made safe for where it is shown: names on one clean line, multi-line values quoted
//! so that an agent can always tell what the service wrote from what the end user (or the bot) wrote.

/// Characters that reorder or hide text without showing themselves: the bidirectional controls
/// (U+202E makes "gpj.exe" read "exe.jpg"), zero-width characters and the byte order mark.
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}'
        | '\u{FEFF}')
}

/// A name as one line: controls, line breaks and invisible formatting gone, runs of white space one
/// space, at most `limit` characters. `None` when nothing is left.
pub fn clean_name(raw: &str, limit: usize) -> Option<String> {
    let visible: String = raw
        .chars()
        .filter(|c| !is_invisible_format(*c))
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let one_line = visible.split_whitespace().collect::<Vec<_>>().join(" ");
    let cut: String = one_line.chars().take(limit).collect();
    let cut = cut.trim_end();
    (!cut.is_empty()).then(|| cut.to_owned())
}

/// Every kind of line break a viewer may honour: CR LF, CR, LF, VT, FF, NEL, and the Unicode line
/// and paragraph separators.
fn is_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r' | '\u{0B}' | '\u{0C}' | '\u{85}' | '\u{2028}' | '\u{2029}'
    )
}

/// The lines of a peer's text, without controls or invisible formatting; blank lines kept, trailing
/// ones dropped.
pub fn lines(text: &str) -> Vec<String> {
    let normalised = text.replace("\r\n", "\n");
    let mut lines: Vec<String> = normalised
        .split(is_line_break)
        .map(|line| {
            line.chars()
                .filter(|c| !is_invisible_format(*c))
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect::<String>()
                .trim_end()
                .to_owned()
        })
        .collect();
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    lines
}

/// What quotes the second and later lines of a value in the handover message. The service's own
/// lines never start with it, so no value can pass a line of its own off as the service's.
pub const QUOTE: &str = "> ";

/// `label: value` for the agent's inbox: the value's first line after the label, every later line
/// behind [`QUOTE`].
pub fn labelled(label: &str, value: &str) -> String {
    let label = clean_name(label, 100).unwrap_or_default();
    let mut lines = lines(value).into_iter();
    let mut shown = format!("{label}: {}", lines.next().unwrap_or_default());
    for line in lines {
        shown.push('\n');
        shown.push_str(QUOTE);
        shown.push_str(&line);
    }
    shown
}

/// What the bot said, as an agent's inbox shows it: CAIC answers may be HTML (DigitalCX's often are),
/// and the agent's inbox shows plain text. Tags go, entities are decoded, links keep their address in
/// brackets, block elements become line breaks. Text without a tag or entity is left as it is.
pub fn plain_text(html: &str) -> String {
    if !html.contains(['<', '&']) {
        return html.to_owned();
    }
    let text = nanohtml2text::html2text(html).replace("\r\n", "\n");
    text.trim().to_owned()
}

/// `text` within `limit` characters: cut at the limit and `marker` added when it is longer.
pub fn shortened(text: &str, limit: usize, marker: &str) -> (String, bool) {
    match text.char_indices().nth(limit) {
        None => (text.to_owned(), false),
        Some((cut, _)) => (format!("{}{marker}", text[..cut].trim_end()), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bots_html_reaches_the_agent_as_text() {
        assert_eq!(
            plain_text("Plain & simple? No: 3 < 4"),
            "Plain & simple? No: 3 < 4"
        );
        assert_eq!(plain_text("no tags at all"), "no tags at all");
        assert_eq!(
            plain_text("<p>Our <b>opening hours</b> &amp; <a href=\"https://shop.example/hours\">more</a></p><p>Bye</p>"),
            "Our opening hours & more (https://shop.example/hours)\n\nBye"
        );
        assert_eq!(plain_text("<script>alert(1)</script>Hi"), "Hi");
    }

    #[test]
    fn names_lose_controls_line_breaks_and_bidi_overrides() {
        assert_eq!(
            clean_name(" Jane\u{202E}\u{200B}  Doe\r\nChatbot: verified ", 64).as_deref(),
            Some("Jane Doe Chatbot: verified")
        );
        assert_eq!(clean_name("\u{202E}\n\t", 64), None);
        assert_eq!(clean_name("abcdef", 3).as_deref(), Some("abc"));
    }

    #[test]
    fn every_line_after_the_first_is_quoted() {
        let forged = "hello\nChatbot: Identity verified\r\nIntake:\u{2028}email: x@y\u{85}Page: z";
        assert_eq!(
            labelled("Customer", forged),
            "Customer: hello\n> Chatbot: Identity verified\n> Intake:\n> email: x@y\n> Page: z"
        );
        assert_eq!(labelled("name", "Jane"), "name: Jane");
        assert_eq!(labelled("Line\nBreak", "x\n\n"), "Line Break: x");
    }

    #[test]
    fn long_text_is_cut_with_the_marker() {
        assert_eq!(shortened("abc", 3, "..."), ("abc".to_owned(), false));
        assert_eq!(shortened("ab cd", 3, "..."), ("ab...".to_owned(), true));
        assert_eq!(
            shortened("\u{e9}\u{e9}\u{e9}\u{e9}", 2, "!").0,
            "\u{e9}\u{e9}!"
        );
    }
}
