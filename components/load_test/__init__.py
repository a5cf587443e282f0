"""LoadTest: the candidate served by the project's model server and load-tested before a push."""
