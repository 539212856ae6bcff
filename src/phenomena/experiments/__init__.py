"""Chapter-level experiment routines: what a chapter runs, kept out of the notebook so cells stay short."""
