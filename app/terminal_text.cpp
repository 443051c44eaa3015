#include "app/terminal_text.hpp"

#include <locale.h>
#include <wchar.h>

#include <cwchar>
#include <vector>

namespace taskmaster::client {

namespace {

/// One character as printed, and the columns it takes.
struct glyph {
  std::string text;
  size_t columns;
};

/// Makes C.UTF-8 this thread's locale while it lives (mbrtowc and wcwidth
/// follow it), whatever the process locale is.
class utf8_locale {
public:
  utf8_locale() {
    static const locale_t utf8
      = ::newlocale(LC_CTYPE_MASK, "C.UTF-8", static_cast<locale_t>(nullptr));
    previous_ = ::uselocale(utf8 != nullptr ? utf8 : LC_GLOBAL_LOCALE);
  }

  ~utf8_locale() {
    ::uselocale(previous_);
  }

  utf8_locale(const utf8_locale&) = delete;
  utf8_locale& operator=(const utf8_locale&) = delete;

private:
  locale_t previous_;
};

bool is_control(wchar_t wc) {
  return wc < 0x20 || (wc >= 0x7f && wc < 0xa0) || wc == 0x2028
         || wc == 0x2029;
}

std::vector<glyph> glyphs_of(const std::string& text, size_t& total) {
  utf8_locale in_utf8;
  std::vector<glyph> out;
  total = 0;
  std::mbstate_t state{};
  for (size_t at = 0; at < text.size();) {
    wchar_t wc = 0;
    auto n = std::mbrtowc(&wc, text.data() + at, text.size() - at, &state);
    if (n == static_cast<size_t>(-1) || n == static_cast<size_t>(-2)) {
      state = std::mbstate_t{};
      out.push_back({"?", 1});
      at += 1;
    } else {
      if (n == 0) // a NUL
        n = 1;
      if (is_control(wc)) {
        out.push_back({" ", 1});
      } else {
        // Characters newer than glibc's tables (-1) still print, most
        // likely one column wide.
        auto w = ::wcwidth(wc);
        out.push_back({text.substr(at, n), w < 0 ? size_t{1}
                                                 : static_cast<size_t>(w)});
      }
      at += n;
    }
    total += out.back().columns;
  }
  return out;
}

/// The glyphs that fit `width` columns (the last one '~' when cut), and how
/// many columns they take.
std::string fit(const std::string& text, size_t width, size_t& used) {
  size_t total = 0;
  auto glyphs = glyphs_of(text, total);
  std::string out;
  used = 0;
  bool cut = total > width;
  size_t room = cut && width > 0 ? width - 1 : width;
  for (const auto& g : glyphs) {
    if (used + g.columns > room)
      break;
    out += g.text;
    used += g.columns;
  }
  if (cut && width > 0) {
    out += '~';
    ++used;
  }
  return out;
}

} // namespace

std::string printable(const std::string& text) {
  size_t total = 0;
  std::string out;
  for (const auto& g : glyphs_of(text, total))
    out += g.text;
  return out;
}

std::string clip(const std::string& text, size_t width) {
  size_t used = 0;
  return fit(text, width, used);
}

std::string cell(const std::string& text, size_t width) {
  size_t used = 0;
  auto out = fit(text, width, used);
  out.append(width - used, ' ');
  return out;
}

} // namespace taskmaster::client
