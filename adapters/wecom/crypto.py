"""The WeCom callback encryption scheme (企业微信 回调和回复的加解密方案), as the AI bot (智能机器人) uses it.

* ``EncodingAESKey`` is 43 characters of base64; with one ``=`` appended it decodes to the 32-byte AES key.
* A message is encrypted with AES-256-CBC, IV = the key's first 16 bytes, over
  ``16 random bytes | message length (4 bytes, big-endian) | message (UTF-8) | receive id``, padded with
  PKCS#7 to a multiple of 32 bytes (not AES's 16: WeCom pads to 32), then base64-encoded. For an AI bot
  the receive id is the empty string.
* ``msg_signature`` is the hex SHA-1 of the token, the timestamp, the nonce and the encrypted text, sorted
  as strings and concatenated.
* Images and files in callbacks are encrypted the same way (same key and IV, PKCS#7 to 32), raw bytes.

AES comes from ``cryptography`` (PyCA); this module only frames, pads and signs. Every failure is a
``CryptoError``; nothing here logs message content.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 32


class CryptoError(ValueError):
    """A callback that does not decrypt, verify or parse."""


def aes_key(encoding_aes_key: str) -> bytes:
    if len(encoding_aes_key) != 43:
        raise CryptoError("the EncodingAESKey must be 43 characters")
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CryptoError("the EncodingAESKey is not base64") from exc
    if len(key) != 32:
        raise CryptoError("the EncodingAESKey does not decode to 32 bytes")
    return key


def pad(data: bytes) -> bytes:
    n = BLOCK - len(data) % BLOCK
    return data + bytes([n]) * n


def unpad(data: bytes) -> bytes:
    if not data:
        raise CryptoError("empty plaintext")
    n = data[-1]
    if not 1 <= n <= BLOCK or n > len(data) or data[-n:] != bytes([n]) * n:
        raise CryptoError("bad padding")
    return data[:-n]


class WeComCrypto:
    def __init__(self, token: str, encoding_aes_key: str, receive_id: str = "") -> None:
        self._token = token
        self._key = aes_key(encoding_aes_key)
        self._receive_id = receive_id.encode()

    def _cipher(self) -> Cipher[modes.CBC]:
        return Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16]))

    def signature(self, timestamp: str, nonce: str, encrypted: str) -> str:
        return hashlib.sha1("".join(sorted([self._token, timestamp, nonce, encrypted])).encode()).hexdigest()

    def verify(self, msg_signature: str, timestamp: str, nonce: str, encrypted: str) -> None:
        expected = self.signature(timestamp, nonce, encrypted)
        if not hmac.compare_digest(expected, msg_signature.lower()):
            raise CryptoError("the signature does not match")

    def _decrypt_raw(self, data: bytes) -> bytes:
        if not data or len(data) % 16:
            raise CryptoError("the ciphertext is not whole AES blocks")
        decryptor = self._cipher().decryptor()
        return unpad(decryptor.update(data) + decryptor.finalize())

    def decrypt(self, encrypted: str) -> str:
        """The message inside an ``encrypt`` field (or an ``echostr``)."""
        try:
            raw = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CryptoError("the ciphertext is not base64") from exc
        plain = self._decrypt_raw(raw)
        if len(plain) < 20:
            raise CryptoError("the plaintext is too short")
        (length,) = struct.unpack(">I", plain[16:20])
        body, receive_id = plain[20 : 20 + length], plain[20 + length :]
        if len(body) != length:
            raise CryptoError("the message length is wrong")
        if receive_id != self._receive_id:
            raise CryptoError("the message is for another receiver")
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CryptoError("the message is not UTF-8") from exc

    def encrypt(self, message: str, random16: bytes | None = None) -> str:
        body = message.encode("utf-8")
        plain = (random16 or os.urandom(16)) + struct.pack(">I", len(body)) + body + self._receive_id
        encryptor = self._cipher().encryptor()
        return base64.b64encode(encryptor.update(pad(plain)) + encryptor.finalize()).decode()

    def sealed(self, message: str, timestamp: str, nonce: str) -> dict[str, str]:
        """A passive reply: ``{"encrypt", "msgsignature", "timestamp", "nonce"}``."""
        encrypted = self.encrypt(message)
        return {"encrypt": encrypted, "msgsignature": self.signature(timestamp, nonce, encrypted),
                "timestamp": timestamp, "nonce": nonce}  # fmt: skip

    def decrypt_media(self, data: bytes) -> bytes:
        """An image or file downloaded from a callback's URL."""
        return self._decrypt_raw(data)
