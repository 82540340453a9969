using System.Buffers;
using System.Buffers.Binary;
using System.Security.Cryptography;
using Appliance.Platform.Crypto;
using Appliance.Wire.Codec;

namespace Appliance.Wire.Framing;

/// <summary>
/// Secure mode: every frame (header and payload) is sealed with AES-128-GCM (as Ceph's msgr2 secure mode and TLS
/// 1.3's mandatory suite; a quarter faster than AES-256 here, and the cipher is most of what secure mode costs).
/// On the wire:
/// <c>u32 sealed length | ciphertext | 16-byte tag</c>, with the length as associated data. The nonce is a 4-byte
/// salt and a 64-bit counter per direction, both sides counting frames, so a dropped, replayed, reordered or altered
/// frame fails authentication and ends the connection. Keys come from the session key by HKDF, one per direction.
/// One instance per direction; not thread-safe (a connection has one reader and one writer). The cipher is
/// <see cref="AesGcmNi"/> where the CPU has it, else the runtime's <see cref="AesGcm"/>: the same bytes either way.
/// </summary>
public sealed class SecureFrameCodec : IDisposable
{
    public const int TagSize = 16;
    private const int KeySize = 16;
    private readonly AesGcmNi? _fast;
    private readonly AesGcm? _aes;
    private readonly byte[] _salt;
    private ulong _counter;

    private SecureFrameCodec(byte[] key, byte[] salt, bool runtimeCipher)
    {
        if (AesGcmNi.IsSupported && !runtimeCipher)
        {
            _fast = new AesGcmNi(key);
        }
        else
        {
            _aes = new AesGcm(key, TagSize);
        }
        CryptographicOperations.ZeroMemory(key);
        _salt = salt;
    }

    /// <summary>Derives the codec of one direction from the authenticated session key and both handshake nonces.</summary>
    public static SecureFrameCodec Derive(ReadOnlySpan<byte> sessionKey, ReadOnlySpan<byte> handshakeSalt, string direction) =>
        Derive(sessionKey, handshakeSalt, direction, runtimeCipher: false);

    /// <summary>As <see cref="Derive(ReadOnlySpan{byte}, ReadOnlySpan{byte}, string)"/>; <paramref name="runtimeCipher"/>
    /// forces the runtime's AES-GCM even where <see cref="AesGcmNi"/> runs (tests hold the two ends together).</summary>
    internal static SecureFrameCodec Derive(ReadOnlySpan<byte> sessionKey, ReadOnlySpan<byte> handshakeSalt, string direction, bool runtimeCipher)
    {
        var okm = HKDF.DeriveKey(HashAlgorithmName.SHA256, sessionKey.ToArray(), KeySize + 4, handshakeSalt.ToArray(),
            System.Text.Encoding.ASCII.GetBytes("appliance secure frames v2 " + direction));
        var codec = new SecureFrameCodec(okm[..KeySize], okm[KeySize..], runtimeCipher);
        CryptographicOperations.ZeroMemory(okm);
        return codec;
    }

    private void Nonce(Span<byte> nonce)
    {
        _salt.CopyTo(nonce);
        BinaryPrimitives.WriteUInt64LittleEndian(nonce[4..], _counter);
    }

    /// <summary>The bytes a sealed frame of <paramref name="payloadLength"/> payload bytes takes on the wire.</summary>
    public static int SealedFrameSize(int payloadLength) => 4 + FrameHeader.Size + payloadLength + TagSize;

    /// <summary>Seals header + payload into <paramref name="output"/>.</summary>
    public void Seal(WireWriter output, in FrameHeader header, ReadOnlySpan<byte> payload)
    {
        Span<byte> head = stackalloc byte[FrameHeader.Size];
        header.Write(head);
        var size = SealedFrameSize(payload.Length);
        Seal(head, payload, output.GetSpan(size));
        output.Advance(size);
    }

    /// <summary>
    /// Seals an encoded header followed by its payload (<paramref name="plain"/>, contiguous) into
    /// <paramref name="destination"/> (at least <c>4 + plain + tag</c> bytes; must not overlap the plain text).
    /// </summary>
    public void Seal(ReadOnlySpan<byte> plain, Span<byte> destination) => Seal([], plain, destination);

    /// <summary>
    /// Seals an encoded header and a payload that lie apart (a handed-over payload) into
    /// <paramref name="destination"/> without copying them together first (with <see cref="AesGcmNi"/>; the
    /// runtime's cipher wants one span, so there both are copied into place and encrypted there).
    /// </summary>
    public void Seal(ReadOnlySpan<byte> head, ReadOnlySpan<byte> payload, Span<byte> destination)
    {
        var plainLength = head.Length + payload.Length;
        BinaryPrimitives.WriteUInt32LittleEndian(destination, (uint)(plainLength + TagSize));
        Span<byte> nonce = stackalloc byte[12];
        Nonce(nonce);
        Encrypt(nonce, head, payload, destination.Slice(4, plainLength), destination.Slice(4 + plainLength, TagSize), destination[..4]);
        _counter++;
    }

    private void Encrypt(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> first, ReadOnlySpan<byte> second, Span<byte> cipher, Span<byte> tag, ReadOnlySpan<byte> associated)
    {
        if (_fast is not null)
        {
            _fast.EncryptTwoPieces(nonce, first, second, cipher, tag, associated);
            return;
        }
        if (first.IsEmpty)
        {
            _aes!.Encrypt(nonce, second, cipher, tag, associated);
            return;
        }
        first.CopyTo(cipher);
        second.CopyTo(cipher[first.Length..]);
        _aes!.Encrypt(nonce, cipher, cipher, tag, associated);
    }

    /// <summary>
    /// Stage one of opening: the 4-byte length prefix. A length outside what a frame of at most
    /// <paramref name="maxPayload"/> bytes can seal to is refused before any of the frame is buffered.
    /// </summary>
    public static bool TryReadSealedLength(ReadOnlySpan<byte> prefix, int maxPayload, out int sealedLength, out string? error)
    {
        var length = BinaryPrimitives.ReadUInt32LittleEndian(prefix);
        if (length < FrameHeader.Size + TagSize || length > (uint)(maxPayload + FrameHeader.Size + TagSize))
        {
            sealedLength = 0;
            error = $"sealed frame of {length} bytes is outside the allowed range";
            return false;
        }
        sealedLength = (int)length;
        error = null;
        return true;
    }

    /// <summary>
    /// Stage two: authenticates and decrypts one sealed frame in place. <paramref name="prefix"/> is its length
    /// prefix, <paramref name="sealedFrame"/> its ciphertext and tag; on success the plain header and payload are
    /// at the start of <paramref name="sealedFrame"/> (payload at <see cref="FrameHeader.Size"/>). Authentication
    /// failure returns false with the reason, never data.
    /// </summary>
    public bool TryOpenInPlace(ReadOnlySpan<byte> prefix, Span<byte> sealedFrame, int maxPayload, out FrameHeader header, out string? error)
    {
        header = default;
        var plainLength = sealedFrame.Length - TagSize;
        var text = sealedFrame[..plainLength];
        Span<byte> nonce = stackalloc byte[12];
        Nonce(nonce);
        try
        {
            if (_fast is not null)
            {
                _fast.Decrypt(nonce, text, sealedFrame.Slice(plainLength, TagSize), text, prefix[..4]);
            }
            else
            {
                _aes!.Decrypt(nonce, text, sealedFrame.Slice(plainLength, TagSize), text, prefix[..4]);
            }
        }
        catch (AuthenticationTagMismatchException)
        {
            error = $"frame {_counter} failed authentication (altered, replayed, reordered or wrong key)";
            return false;
        }
        if (!FrameHeader.TryRead(text, maxPayload, out header, out error))
        {
            return false;
        }
        if (header.PayloadLength != plainLength - FrameHeader.Size)
        {
            error = $"sealed frame length {plainLength} disagrees with its header ({header.PayloadLength} payload bytes)";
            return false;
        }
        _counter++;
        return true;
    }

    /// <summary>
    /// Opens the next sealed frame from the buffered bytes. On <see cref="FrameStatus.Complete"/> the payload is a
    /// fresh array owned by the caller. Authentication failure is <see cref="FrameStatus.Invalid"/>, never data.
    /// </summary>
    public FrameStatus TryOpen(in ReadOnlySequence<byte> input, int maxPayload, out FrameHeader header, out byte[] payload,
        out SequencePosition consumed, out string? error)
    {
        header = default;
        payload = [];
        consumed = input.Start;
        error = null;
        if (input.Length < 4)
        {
            return FrameStatus.NeedMore;
        }
        Span<byte> prefix = stackalloc byte[4];
        input.Slice(0, 4).CopyTo(prefix);
        if (!TryReadSealedLength(prefix, maxPayload, out var sealedLength, out error))
        {
            return FrameStatus.Invalid;
        }
        if (input.Length < 4 + sealedLength)
        {
            return FrameStatus.NeedMore;
        }
        var sealedBytes = new byte[sealedLength];
        input.Slice(4, sealedLength).CopyTo(sealedBytes);
        if (!TryOpenInPlace(prefix, sealedBytes, maxPayload, out header, out error))
        {
            return FrameStatus.Invalid;
        }
        payload = sealedBytes.AsSpan(FrameHeader.Size, header.PayloadLength).ToArray();
        consumed = input.GetPosition(4 + sealedLength);
        return FrameStatus.Complete;
    }

    public void Dispose()
    {
        _fast?.Dispose();
        _aes?.Dispose();
    }
}
