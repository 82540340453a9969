using System.Buffers;
using System.Buffers.Binary;
using System.Security.Cryptography;
using Appliance.Wire.Codec;

namespace Appliance.Wire.Framing;

/// <summary>
/// Secure mode: every frame (header and payload) is sealed with AES-256-GCM. On the wire:
/// <c>u32 sealed length | ciphertext | 16-byte tag</c>, with the length as associated data. The nonce is a 4-byte
/// salt and a 64-bit counter per direction, both sides counting frames, so a dropped, replayed, reordered or altered
/// frame fails authentication and ends the connection. Keys come from the session key by HKDF, one per direction.
/// One instance per direction; not thread-safe (a connection has one reader and one writer).
/// </summary>
public sealed class SecureFrameCodec : IDisposable
{
    public const int TagSize = 16;
    private readonly AesGcm _aes;
    private readonly byte[] _salt;
    private ulong _counter;

    private SecureFrameCodec(byte[] key, byte[] salt)
    {
        _aes = new AesGcm(key, TagSize);
        _salt = salt;
    }

    /// <summary>Derives the codec of one direction from the authenticated session key and both handshake nonces.</summary>
    public static SecureFrameCodec Derive(ReadOnlySpan<byte> sessionKey, ReadOnlySpan<byte> handshakeSalt, string direction)
    {
        var okm = HKDF.DeriveKey(HashAlgorithmName.SHA256, sessionKey.ToArray(), 36, handshakeSalt.ToArray(),
            System.Text.Encoding.ASCII.GetBytes("appliance secure frames v1 " + direction));
        return new SecureFrameCodec(okm[..32], okm[32..]);
    }

    private void Nonce(Span<byte> nonce)
    {
        _salt.CopyTo(nonce);
        BinaryPrimitives.WriteUInt64LittleEndian(nonce[4..], _counter);
    }

    /// <summary>Seals header + payload into <paramref name="output"/>.</summary>
    public void Seal(WireWriter output, in FrameHeader header, ReadOnlySpan<byte> payload)
    {
        var plainLength = FrameHeader.Size + payload.Length;
        var sealedLength = plainLength + TagSize;
        output.WriteU32((uint)sealedLength);
        var lengthBytes = output.WrittenSpan[^4..].ToArray();
        var rented = ArrayPool<byte>.Shared.Rent(plainLength);
        try
        {
            var plain = rented.AsSpan(0, plainLength);
            header.Write(plain);
            payload.CopyTo(plain[FrameHeader.Size..]);
            var dest = output.GetSpan(sealedLength);
            Span<byte> nonce = stackalloc byte[12];
            Nonce(nonce);
            _aes.Encrypt(nonce, plain, dest[..plainLength], dest.Slice(plainLength, TagSize), lengthBytes);
            output.Advance(sealedLength);
            _counter++;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented, clearArray: true);
        }
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
        Span<byte> lengthBytes = stackalloc byte[4];
        input.Slice(0, 4).CopyTo(lengthBytes);
        var sealedLength = BinaryPrimitives.ReadUInt32LittleEndian(lengthBytes);
        if (sealedLength < FrameHeader.Size + TagSize || sealedLength > (uint)(maxPayload + FrameHeader.Size + TagSize))
        {
            error = $"sealed frame of {sealedLength} bytes is outside the allowed range";
            return FrameStatus.Invalid;
        }
        if (input.Length < 4 + sealedLength)
        {
            return FrameStatus.NeedMore;
        }
        var plainLength = (int)sealedLength - TagSize;
        var sealedBytes = ArrayPool<byte>.Shared.Rent((int)sealedLength);
        var plain = new byte[plainLength];
        try
        {
            input.Slice(4, sealedLength).CopyTo(sealedBytes);
            Span<byte> nonce = stackalloc byte[12];
            Nonce(nonce);
            try
            {
                _aes.Decrypt(nonce, sealedBytes.AsSpan(0, plainLength), sealedBytes.AsSpan(plainLength, TagSize), plain, lengthBytes);
            }
            catch (AuthenticationTagMismatchException)
            {
                error = $"frame {_counter} failed authentication (altered, replayed, reordered or wrong key)";
                return FrameStatus.Invalid;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(sealedBytes);
        }
        if (!FrameHeader.TryRead(plain, maxPayload, out header, out error))
        {
            return FrameStatus.Invalid;
        }
        if (header.PayloadLength != plainLength - FrameHeader.Size)
        {
            error = $"sealed frame length {plainLength} disagrees with its header ({header.PayloadLength} payload bytes)";
            return FrameStatus.Invalid;
        }
        _counter++;
        payload = plain[FrameHeader.Size..];
        consumed = input.GetPosition(4 + sealedLength);
        return FrameStatus.Complete;
    }

    public void Dispose() => _aes.Dispose();
}
