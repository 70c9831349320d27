"""Studies: scripts that train and score configurations against each other, reproducibly (docs/results/)."""
