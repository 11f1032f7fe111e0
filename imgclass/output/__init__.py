"""Everything imgclass writes: record sinks, shards, vectors, the HTML report."""
