// What reaches a terminal. Names in a profile (functions, files, threads,
// arguments) come from the profiled program; printed raw, an escape sequence
// in one could retitle the window, write the clipboard or erase the screen.
// While a TerminalText guard lives, everything written to its stream that is
// a control character, a C1 control or a byte that is not UTF-8 is shown
// escaped ("\x1b", "\u009b"); line breaks and tabs pass. The control
// sequences jitprof means (colors, redrawing the progress line) go through
// control().
#pragma once

#include <ostream>
#include <streambuf>
#include <string>
#include <string_view>

namespace jitprof::cli {

// `text` with control characters and bytes that are not UTF-8 escaped, newlines and tabs too.
std::string printable(std::string_view text);

// A status line on stderr (a terminal), drawn over the previous one; "" clears it.
void status_line(const std::string& line);

// The look of jitprof's tables on stdout: bold titles and colored figures,
// on a terminal and unless NO_COLOR is set.
class Style {
 public:
  Style();
  // A blank line, then the title on a line of its own.
  void title(const std::string& text) const;
  void hot(const std::string& text) const;     // red: where time goes, what grew
  void cooler(const std::string& text) const;  // blue: what shrank

 private:
  void write(std::string_view color, const std::string& text) const;
  bool on_;
};

class TerminalText : public std::streambuf {
 public:
  // Filters `stream` from now on if it writes to a terminal (`terminal_fd`).
  TerminalText(std::ostream& stream, int terminal_fd);
  ~TerminalText() override;
  TerminalText(const TerminalText&) = delete;
  TerminalText& operator=(const TerminalText&) = delete;

  // Writes `sequence` to `stream` as it is.
  static void control(std::ostream& stream, std::string_view sequence);

 protected:
  int_type overflow(int_type c) override;
  std::streamsize xsputn(const char* text, std::streamsize count) override;
  int sync() override;

 private:
  void write(std::string_view text);
  void flush_tail();

  std::ostream& stream_;
  std::streambuf* target_ = nullptr;  // the stream's own buffer; null when not filtering
  std::string tail_;                  // the start of a UTF-8 character whose end has not been written yet
};

}  // namespace jitprof::cli
