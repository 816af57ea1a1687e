"""Source readers: the school-admin system's data as a SourceSnapshot."""
