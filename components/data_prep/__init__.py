"""DataPrep (source CSVs -> time-ordered train/eval split) and the ExampleGen reading it."""
