#pragma once

#include <cstddef>
#include <string>

/// Text the client prints in tables and stream lines. Names, commands and
/// labels come from users: a control character in one must not break a row
/// or reach the terminal, and a cut must not split a UTF-8 character.
/// Columns are glibc's (wcwidth in C.UTF-8): a CJK character or an emoji
/// takes two, a combining mark none.
namespace taskmaster::client {

/// `text` with control characters as spaces and bytes that are not UTF-8 as
/// '?'.
std::string printable(const std::string& text);

/// `printable(text)` cut to at most `width` columns on a character boundary;
/// a cut ends in '~'.
std::string clip(const std::string& text, size_t width);

/// `clip(text, width)` padded with spaces to exactly `width` columns: a table
/// cell (fmt's own padding counts some characters differently).
std::string cell(const std::string& text, size_t width);

} // namespace taskmaster::client
