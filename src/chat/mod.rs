//! Chat templates and the text-to-SQL prompt.
