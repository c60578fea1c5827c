#include "terminal.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>

#include "bundle/text.h"

namespace jitprof::cli {
namespace {

// The length of the UTF-8 character `text` starts with: 0 when it is not one,
// or -1 when `text` ends before the character does (it may still be one).
int character_length(std::string_view text) {
  const auto lead = static_cast<unsigned char>(text[0]);
  int length = lead < 0x80 ? 1 : (lead & 0xe0) == 0xc0 ? 2 : (lead & 0xf0) == 0xe0 ? 3 : (lead & 0xf8) == 0xf0 ? 4 : 0;
  if (length == 0 || (lead & 0xfe) == 0xc0 || lead > 0xf4) return 0;  // C0/C1 leads are overlong; F5+ past U+10FFFF
  for (int i = 1; i < length; ++i) {
    if (static_cast<std::size_t>(i) >= text.size()) return -1;
    if ((static_cast<unsigned char>(text[i]) & 0xc0) != 0x80) return 0;
  }
  return length;
}

// Appends `text`, escaped, to `out`; returns how many bytes at its end were
// left: the start of a character that `text` cuts off (only when `complete` is false).
std::size_t append_printable(std::string_view text, std::string& out, bool keep_newlines, bool complete) {
  std::size_t at = 0;
  while (at < text.size()) {
    const auto byte = static_cast<unsigned char>(text[at]);
    const int length = character_length(text.substr(at));
    if (length < 0 && !complete) return text.size() - at;
    if (length == 1 && byte >= 0x20 && byte != 0x7f) {
      out += text[at++];
    } else if (length == 1 && keep_newlines && (byte == '\n' || byte == '\t')) {
      out += text[at++];
    } else if (length == 2 && byte == 0xc2 && static_cast<unsigned char>(text[at + 1]) < 0xa0) {
      out += fmt::format("\\u{:04x}", static_cast<unsigned char>(text[at + 1]));  // C1 control, e.g. CSI
      at += 2;
    } else if (length > 1 && bundle::is_utf8(text.substr(at, static_cast<std::size_t>(length)))) {
      out.append(text.substr(at, static_cast<std::size_t>(length)));
      at += static_cast<std::size_t>(length);
    } else {
      out += fmt::format("\\x{:02x}", byte);
      ++at;
    }
  }
  return 0;
}

}  // namespace

std::string printable(std::string_view text) {
  std::string out;
  append_printable(text, out, false, true);
  return out;
}

void status_line(const std::string& line) {
  TerminalText::control(std::cerr, "\r\033[K");
  std::cerr << line << std::flush;
}

TerminalText::TerminalText(std::ostream& stream, int terminal_fd) : stream_(stream) {
  if (!::isatty(terminal_fd)) return;
  target_ = stream.rdbuf(this);
}

TerminalText::~TerminalText() {
  if (target_ == nullptr) return;
  flush_tail();
  target_->pubsync();
  stream_.rdbuf(target_);
}

void TerminalText::control(std::ostream& stream, std::string_view sequence) {
  auto* filter = dynamic_cast<TerminalText*>(stream.rdbuf());
  if (filter == nullptr) {
    stream << sequence;
    return;
  }
  filter->flush_tail();
  filter->target_->sputn(sequence.data(), static_cast<std::streamsize>(sequence.size()));
}

TerminalText::int_type TerminalText::overflow(int_type c) {
  if (!traits_type::eq_int_type(c, traits_type::eof())) {
    const char byte = traits_type::to_char_type(c);
    write(std::string_view(&byte, 1));
  }
  return traits_type::not_eof(c);
}

std::streamsize TerminalText::xsputn(const char* text, std::streamsize count) {
  write(std::string_view(text, static_cast<std::size_t>(count)));
  return count;
}

int TerminalText::sync() {
  flush_tail();
  return target_->pubsync();
}

void TerminalText::write(std::string_view text) {
  tail_.append(text);
  std::string out;
  const std::size_t left = append_printable(tail_, out, true, false);
  tail_.erase(0, tail_.size() - left);
  target_->sputn(out.data(), static_cast<std::streamsize>(out.size()));
}

void TerminalText::flush_tail() {
  if (tail_.empty()) return;
  std::string out;
  append_printable(tail_, out, true, true);
  tail_.clear();
  target_->sputn(out.data(), static_cast<std::streamsize>(out.size()));
}

Style::Style() : on_(::isatty(STDOUT_FILENO) && std::getenv("NO_COLOR") == nullptr) {}

void Style::title(const std::string& text) const {
  std::cout << "\n";
  write("\033[1m", text);
  std::cout << "\n";
}

void Style::hot(const std::string& text) const { write("\033[31m", text); }
void Style::cooler(const std::string& text) const { write("\033[34m", text); }

void Style::write(std::string_view color, const std::string& text) const {
  if (on_) TerminalText::control(std::cout, color);
  std::cout << text;
  if (on_) TerminalText::control(std::cout, "\033[0m");
}

}  // namespace jitprof::cli
