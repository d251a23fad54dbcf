//! Word error rate, to measure speech recognition against known scripts: the
//! crate's tests, the root crate's KI tests and benchmarks, and
//! `tests/ki_corpus/measure.py` (which ports [`normalize_words`]). Nothing in
//! production measures transcripts, so this is compiled only for tests and
//! with the `eval` feature.

/// Word error rate of `hypothesis` against `reference`: word-level
/// Levenshtein distance (substitutions + deletions + insertions) over the
/// reference's word count, after [`normalize_words`] on both. 0 for two
/// empty texts, 1 for a hypothesis against an empty reference.
pub fn word_error_rate(reference: &str, hypothesis: &str) -> f64 {
    let (errors, words) = word_errors(reference, hypothesis);
    if words == 0 {
        return if errors == 0 { 0.0 } else { 1.0 };
    }
    errors as f64 / words as f64
}

/// `(edit distance, reference words)`, to sum over a corpus.
pub fn word_errors(reference: &str, hypothesis: &str) -> (usize, usize) {
    let r = normalize_words(reference);
    let h = normalize_words(hypothesis);
    let mut row: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, hw) in h.iter().enumerate() {
            let substitution = diagonal + usize::from(rw != hw);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    (row[h.len()], r.len())
}

/// Lowercase words without punctuation, for comparing transcripts: hyphens
/// split words, apostrophes stay inside them (`don't`, then expanded as
/// Whisper's English normalizer does), e-mail addresses are spelled as spoken
/// (`tom.berg@example.com` → `tom dot berg at example dot com`), `%` is
/// `percent`, numbers in digits are spelled out in English (`400` → `four
/// hundred`, `2,000` → `two thousand`) except that a run of numerals with five
/// digits or more in all, or a leading zero, is read digit by digit (`412 34
/// 567` → `four one two three four five six seven`: phone and account
/// numbers), and a few British spellings become American (`centre` →
/// `center`), as Whisper writes them.
pub fn normalize_words(text: &str) -> Vec<String> {
    enum Tok {
        Digits(String),
        Amount(u64),
        Word(String),
    }
    let lower = text.to_lowercase().replace('\u{2019}', "'");
    // Spoken punctuation of addresses; acronyms ("a.i.") lose their dots.
    let chars: Vec<char> = lower.chars().collect();
    let mut spelled = String::with_capacity(lower.len() + 16);
    for (i, &c) in chars.iter().enumerate() {
        let before = i.checked_sub(1).and_then(|j| chars.get(j)).copied();
        let after = chars.get(i + 1).copied();
        let alnum = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
        match c {
            '@' => spelled.push_str(" at "),
            '%' => spelled.push_str(" percent "),
            '.' if alnum(before) && alnum(after) => {
                // "a.i." stays one word; "tom.berg" is "tom dot berg".
                let single = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
                let acronym =
                    single(i.checked_sub(2).and_then(|j| chars.get(j)).copied()) && single(chars.get(i + 2).copied());
                if acronym {
                    continue;
                }
                spelled.push_str(" dot ");
            }
            c => spelled.push(c),
        }
    }
    let mut toks = Vec::new();
    for raw in spelled.split(|c: char| c.is_whitespace() || c == '-' || c == '/') {
        let core = raw.trim_matches(|c: char| !c.is_alphanumeric() && c != ',');
        let core = core.trim_matches(',');
        if !core.is_empty() && core.chars().all(|c| c.is_ascii_digit()) {
            toks.push(Tok::Digits(core.to_owned()));
            continue;
        }
        if !core.is_empty() && core.chars().all(|c| c.is_ascii_digit() || c == ',') {
            let plain: String = core.chars().filter(char::is_ascii_digit).collect();
            if let Ok(n) = plain.parse::<u64>() {
                toks.push(Tok::Amount(n));
                continue;
            }
        }
        let word: String = raw.chars().filter(|c| c.is_alphanumeric() || *c == '\'').collect();
        let word = word.trim_matches('\'');
        if !word.is_empty() {
            toks.push(Tok::Word(word.to_owned()));
        }
    }
    let mut words = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Tok::Digits(_) => {
                let mut run = Vec::new();
                while let Some(Tok::Digits(d)) = toks.get(i) {
                    run.push(d.as_str());
                    i += 1;
                }
                let total: usize = run.iter().map(|d| d.len()).sum();
                if total >= 5 || run.iter().any(|d| d.len() > 1 && d.starts_with('0')) {
                    for d in run.iter().flat_map(|d| d.chars()) {
                        words.push(spell_number(u64::from(d as u8 - b'0')));
                    }
                } else {
                    for d in run {
                        if let Ok(n) = d.parse::<u64>() {
                            words.extend(spell_number(n).split(' ').map(str::to_string));
                        }
                    }
                }
                continue;
            }
            Tok::Amount(n) => words.extend(spell_number(*n).split(' ').map(str::to_string)),
            Tok::Word(w) => push_word(&mut words, w),
        }
        i += 1;
    }
    words
}

fn push_word(words: &mut Vec<String>, word: &str) {
    let word = match word {
        "centre" => "center",
        "centres" => "centers",
        "colour" => "color",
        "favour" => "favor",
        "favourite" => "favorite",
        "cheque" => "check",
        "cheques" => "checks",
        "organise" => "organize",
        "realise" => "realize",
        "programme" => "program",
        "okay" => "ok",
        w => w,
    };
    // Contractions as Whisper's English normalizer expands them.
    let expanded = match word {
        "it's" => "it is",
        "that's" => "that is",
        "there's" => "there is",
        "what's" => "what is",
        "i'm" => "i am",
        "you're" => "you are",
        "we're" => "we are",
        "they're" => "they are",
        "i'll" => "i will",
        "we'll" => "we will",
        "you'll" => "you will",
        "i've" => "i have",
        "we've" => "we have",
        "i'd" => "i would",
        "can't" => "cannot",
        "don't" => "do not",
        "doesn't" => "does not",
        "didn't" => "did not",
        "won't" => "will not",
        "isn't" => "is not",
        "aren't" => "are not",
        "let's" => "let us",
        w => w,
    };
    words.extend(expanded.split(' ').map(str::to_string));
}

fn spell_number(n: u64) -> String {
    const ONES: [&str; 20] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ];
    const TENS: [&str; 10] = [
        "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
    ];
    fn below_thousand(n: u64, out: &mut Vec<String>) {
        let (h, rest) = (n / 100, n % 100);
        if h > 0 {
            out.push(ONES[h as usize].into());
            out.push("hundred".into());
        }
        if rest >= 20 {
            out.push(TENS[(rest / 10) as usize].into());
            if rest % 10 > 0 {
                out.push(ONES[(rest % 10) as usize].into());
            }
        } else if rest > 0 || h == 0 {
            out.push(ONES[rest as usize].into());
        }
    }
    if n >= 1_000_000_000_000 {
        // Account and card numbers: digit by digit, as they are read out.
        return n
            .to_string()
            .chars()
            .map(|c| ONES[(c as u8 - b'0') as usize])
            .collect::<Vec<_>>()
            .join(" ");
    }
    let mut out = Vec::new();
    let mut rest = n;
    for (scale, name) in [(1_000_000_000, "billion"), (1_000_000, "million"), (1_000, "thousand")] {
        if rest >= scale {
            below_thousand(rest / scale, &mut out);
            out.push(name.into());
            rest %= scale;
        }
    }
    if rest > 0 || out.is_empty() {
        below_thousand(rest, &mut out);
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_error_rate_counts_edits_over_reference_words() {
        assert_eq!(word_error_rate("the cat sat", "the cat sat"), 0.0);
        assert_eq!(word_error_rate("The cat, sat!", "the cat sat"), 0.0);
        assert!((word_error_rate("the cat sat", "the bat sat") - 1.0 / 3.0).abs() < 1e-9);
        assert!((word_error_rate("the cat sat", "the cat") - 1.0 / 3.0).abs() < 1e-9);
        assert!((word_error_rate("the cat sat", "the cat sat down") - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(word_error_rate("a b", "c d e f"), 2.0);
        assert_eq!(word_error_rate("", ""), 0.0);
        assert_eq!(word_error_rate("", "x"), 1.0);
        assert_eq!(
            word_errors("Customer centre, good morning.", "Customer Center. Good morning."),
            (0, 4)
        );
        assert_eq!(
            word_errors("I don't want fund-saving", "i don't want fund saving"),
            (0, 6)
        );
    }

    #[test]
    fn numbers_are_compared_as_words() {
        assert_eq!(normalize_words("400 kroner"), ["four", "hundred", "kroner"]);
        assert_eq!(normalize_words("2,000 a month"), ["two", "thousand", "a", "month"]);
        assert_eq!(normalize_words("50,000."), ["fifty", "thousand"]);
        assert_eq!(normalize_words("at 9"), ["at", "nine"]);
        assert_eq!(
            normalize_words("1,234,567"),
            "one million two hundred thirty four thousand five hundred sixty seven"
                .split(' ')
                .collect::<Vec<_>>()
        );
        assert_eq!(normalize_words("0"), ["zero"]);
        // Phone and account numbers are said digit by digit.
        assert_eq!(
            word_error_rate("nine one two three four five six seven", "9-1-2-3-4-5-6-7."),
            0.0
        );
        assert_eq!(word_error_rate("nine eight seven six five", "98765"), 0.0);
        assert_eq!(word_error_rate("It is locked, I am out", "It's locked, I'm out"), 0.0);
        assert_eq!(
            word_error_rate("It is four one two, three four, five six seven.", "It's 412 34 567."),
            0.0
        );
        assert_eq!(word_error_rate("one two three", "123"), 0.0 + 2.0 / 3.0);
        assert_eq!(
            word_error_rate("john dot smith at example dot com", "John.Smith@example.com"),
            0.0
        );
        assert_eq!(
            word_error_rate("an AI takes notes, five percent", "An A.I. takes notes, 5%"),
            0.0
        );
        assert_eq!(
            word_error_rate("Fifty thousand kroner, and yes.", "50,000 kroner and yes"),
            0.0
        );
    }
}
