import adaptopt
import pytest

ISAS = list(adaptopt.available_isas())


@pytest.fixture(autouse=True)
def _restore_globals():
    """No test may leak a forced ISA or thread count into the next one."""
    isa, threads = adaptopt.isa(), adaptopt.get_num_threads()
    yield
    adaptopt.set_isa(isa)
    adaptopt.set_num_threads(threads)


@pytest.fixture(params=ISAS)
def isa(request):
    """Runs the test once under every ISA this CPU supports."""
    previous = adaptopt.isa()
    adaptopt.set_isa(request.param)
    assert adaptopt.isa() == request.param
    yield request.param
    adaptopt.set_isa(previous)
