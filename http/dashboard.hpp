#pragma once

#include <string_view>

namespace taskmaster::http {

/// The dashboard page, embedded in the binary at build time.
std::string_view dashboard_html();

} // namespace taskmaster::http
