"""Print the mutation score from mutmut's summary (`mutmut export-cicd-stats` writes it).

Usage: python tools/mutation_score.py mutants/mutmut-cicd-stats.json
"""
from __future__ import annotations

import json
import sys


def main(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        s = json.load(f)
    # Every mutant but the ones no test covers counts; a timeout or a crash is a kill (the test run noticed).
    killed = s["killed"] + s["timeout"] + s["segfault"]
    total = s["total"] - s["skipped"]
    score = 100 * killed / total if total else 0.0
    print(f"mutation score: {score:.1f}% (killed {killed} of {total}; survived {s['survived']}, "
          f"no tests {s['no_tests']}, suspicious {s['suspicious']}, not checked {s['check_was_interrupted_by_user']})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "mutants/mutmut-cicd-stats.json"))
