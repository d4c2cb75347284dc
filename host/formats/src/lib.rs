//! The three wire formats (`anthropic.messages`, `openai.chat_completions`,
//! `openai.responses`) and the converters between them.
