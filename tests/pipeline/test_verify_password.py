"""The verify step's password check: what cloudbase-init posts, not whatever decrypts."""

from __future__ import annotations

import base64
import re

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from osbuild.pipeline.steps.verify_image import decrypts, new_keypair
from osbuild_sim.guest import cloudbase_init_password

# A test key (made for this file) and a password encrypted for ANOTHER key. OpenSSL 3.2 and
# later decrypt it with implicit rejection to the synthetic message b'b\xca\x93%', which is
# valid UTF-8: the check that only asked for text accepted it (about 1 in 200 such posts).
KEY_PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDHHBcnpc6eFh5B\n"
    "pRJqt7g+aI6Y8OYWHsA4Qv7icYBkliCNSpDZ71jPYxh85tKyrvEvRh38lQW6xvLc\n"
    "0B60C88h+pbh+rILL3GD1d7QHEg2/eWATo09LaiSByLygKhzqOTTVAbSqfDhsobE\n"
    "RkdNR9MV7E1ZIsDsuT174WABWpx0C0dEbsGeyOKcECLes47ovvv/lHZaXwi4KuE1\n"
    "19l2+bB8Hp+liAEZdRCHNz6uSMQVYT3hop7ENWuJkw8oPIWmEVEM5yX8lphd0T9G\n"
    "EQ0pOvBzJMpnB9MdQduk1IgIZpU9aQhrhtbMMNOl0i+N99Lcq+9AXQXpHjg2Sevv\n"
    "quPh+NxtAgMBAAECggEAQC+/Cyn5dJ7+u/zB9iMpwvyj04v9MG5TWw/F6SvbzxFS\n"
    "hxndnlP5VknE0Cb9D1s0JyA8dHt58F9IVYTGERapfHOzBkBx+wcdWfmtLXugkBHD\n"
    "VVx9TZaVfBXO30w4gaiVs8anuGvOWoPZzBY30CLyWmPl/3Ejrmx89J2P/H/AZevX\n"
    "Q2cSGpmuhUCHwLYnuhf7qdu7Gw+4OS5LGG36AnbOksP57kURVUZBxZBp0TZkmRPd\n"
    "NRgmmcV/PRboH7hX6USBuyI3X0eqDtLbPB1rRtPW+MM7KlSqVgxt/B1O2WOkXxrl\n"
    "cWCZqAqJEzpElfcTaeEMCFH1arlLFKX7SYtIMOV4BQKBgQDmJQ2O/JPM4OJl/pij\n"
    "zxryisCXBoKkbxUVOIAUcTqX1jOpMG+gEGcWq0GRoeF0DLI45AeRK3kfMkzjYXmx\n"
    "VYbgx6o/LdkrNsxOJ/m/BUAO9KQBgm0gIHZu2FQT+TeKCtR8+P4BNnATOtTO1VV6\n"
    "r7PqN02zsBcNgibZT8n2g0cSkwKBgQDdenkDmUFeyVrsOfrBBreb8WyJkIiokS0b\n"
    "YoVDrZuzlXGjDUA5pnx1xZbOSlsynqorTkP4c/ufX3nGirDBRWZm65uOFFc2t0/Z\n"
    "g3rUxY+4AnspyZKoSp01qLQ7Bv+rHHzDnpFgZEzitmQSxLsxNRHUkwOktVeBlaxy\n"
    "OQuSIyq0/wKBgHS8MqZmYym2n9+QRihAsrB3xLxWJwn09kKvR/gWftvpYIbe9J/B\n"
    "8ihDcZzG+a59iiDlORlfba5vOyTSmoFimmmFnUsynEcZIoQ6Lqm/pgBwAohpeaSk\n"
    "Eq6it/LxpEQ2vhUtztkanbqDStImz5bNbHrO1nDgTrEhZUcw+4Y4jGJVAoGBAK4V\n"
    "yzL57nkLuiz98cxxdDbeEBsdAV3GJvdkfC1TM5R3vgeUrcviwedsdPoXVhG2xzkc\n"
    "3q5WtAx0ZmqZrw9rdm8leHK4KEk400m8X/sIgsv3H0ocR+uCIon/3hKbkLC1xpeY\n"
    "dtqWXBzDkmtyOVUXSrmVCQMZCvwvYomxrxeiDrqPAoGATeSP2pYpBWO4rh0xY0xn\n"
    "x/pVAHAH4D+VhHcGMHssPbnKqN5n/nx3KSOVXacO/J1daYXIYh2ztYUggz1ddSZW\n"
    "5l2HrPBmRjKCIxCneD5hEE22DKnCSG7VqrU3gRmCzPnQU5d7JRLB6TzC5JCtvSod\n"
    "QhtpxWkmSu2u3iCFsFbuIS0=\n"
    "-----END PRIVATE KEY-----\n"
)
FOREIGN_CIPHERTEXT = (
    "cafpsexVrdiis3tRds8oXk77rCn6nta+yMEx+43JcpLMvpErJTA3x0I49y5Iu4K60ZaZpPF6PtZKLz2u"
    "rF4kphEyPcdYOlpzYrmiVHTDZ42NCYy6OOq+A1jOHOpd/ZhbbdFHhDLbDnt7iPzYysMzSp4RoiAA+PPl"
    "qY3K79A6HEkTur00euSw2bEUDrw6EM6KGk4R+FDRoI5ECMp5daaTCg0mOIisupE5dDQ7tbAAaJUwBCBE"
    "o6r/6w07eWiAnvVjfNipqqrjHrDHnui0Mq7H+i1PxTneQHQzxc2e9AXVkL77Y81egikooQnSTiYRdS2T"
    "3I5MTddCnD8oQmAYrdMRdw=="
)


def _key() -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(KEY_PEM.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def _posted(key: rsa.RSAPrivateKey, password: bytes) -> str:
    return base64.b64encode(key.public_key().encrypt(password, padding.PKCS1v15())).decode()


def test_a_password_encrypted_for_another_key_is_refused_even_when_it_decrypts() -> None:
    assert not decrypts(_key(), FOREIGN_CIPHERTEXT)


@pytest.mark.parametrize("password", [
    b"Ab1",  # cloudbase-init's shortest (user_password_length 3)
    b"q7RkXr3mVt9LpZw2HsNa",  # its default: 20 base64 letters and digits
    b"Lifecycle-Secret-7f3a9c",  # an admin_pass given in the metadata
])
def test_what_cloudbase_init_posts_decrypts(password: bytes) -> None:
    key, _ = new_keypair()
    assert decrypts(key, _posted(key, password))


@pytest.mark.parametrize("plain", [
    b"b\xca\x93%",  # the synthetic message above
    b"abcdefgh",  # no upper-case letter, no digit: never generated
    b"Ab",  # shorter than cloudbase-init allows
    b"Abc 123",  # a space: not a generated password
    b"\x00Ab1",
])
def test_other_plaintexts_are_not_a_posted_password(plain: bytes) -> None:
    key, _ = new_keypair()
    assert not decrypts(key, _posted(key, plain))


def test_the_simulated_guest_generates_as_cloudbase_init_does() -> None:
    for _ in range(200):
        password = cloudbase_init_password()
        assert re.fullmatch(r"[A-Za-z0-9]{20}", password)
        assert re.search("[a-z]", password) and re.search("[A-Z]", password)
        assert re.search("[0-9]", password)
    assert len(cloudbase_init_password(3)) == 3
