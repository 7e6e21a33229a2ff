"""The `lnn` command's clean error, as tests check it."""


def assert_one_line_error(capsys, code, *fragments):
    """`lnn` exited with status 2 and one line `lnn: error: ...` holding every fragment, no traceback; the line."""
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("lnn: error: ")
    assert "Traceback" not in captured.err + captured.out
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]
