using System.Security.Cryptography;
using System.Text;

namespace Appliance.Wire.Auth;

/// <summary>
/// Seals bytes for the holder of one entity's key: what the monitors hand an entity that only it may read (a ticket's
/// session key, a service's rotating secrets) travels sealed, whatever the connection's mode. AES-256-GCM under a key
/// derived from the entity's secret for one purpose (HKDF-SHA256, info "box|" + purpose), so a box made for one
/// purpose never opens as another; a fresh random nonce per box. Layout: nonce (12) | cipher text | tag (16).
/// </summary>
public static class SecretBox
{
    private const int NonceSize = 12;
    private const int TagSize = 16;

    public static byte[] Seal(Secret key, string purpose, ReadOnlySpan<byte> plain)
    {
        ArgumentNullException.ThrowIfNull(key);
        var box = new byte[NonceSize + plain.Length + TagSize];
        RandomNumberGenerator.Fill(box.AsSpan(0, NonceSize));
        using var aes = new AesGcm(Derive(key, purpose), TagSize);
        aes.Encrypt(box.AsSpan(0, NonceSize), plain, box.AsSpan(NonceSize, plain.Length), box.AsSpan(NonceSize + plain.Length));
        return box;
    }

    /// <summary>Opens a box; a box made with another key, for another purpose, or altered is refused.</summary>
    public static byte[] Open(Secret key, string purpose, ReadOnlySpan<byte> box)
    {
        ArgumentNullException.ThrowIfNull(key);
        if (box.Length < NonceSize + TagSize)
        {
            throw new AuthenticationException($"sealed {purpose} is truncated");
        }
        var plain = new byte[box.Length - NonceSize - TagSize];
        try
        {
            using var aes = new AesGcm(Derive(key, purpose), TagSize);
            aes.Decrypt(box[..NonceSize], box.Slice(NonceSize, plain.Length), box[^TagSize..], plain);
        }
        catch (AuthenticationTagMismatchException)
        {
            throw new AuthenticationException($"sealed {purpose} does not open with our key: altered, or sealed for someone else");
        }
        return plain;
    }

    private static byte[] Derive(Secret key, string purpose) =>
        HKDF.DeriveKey(HashAlgorithmName.SHA256, key.Bytes.ToArray(), 32, salt: null, Encoding.UTF8.GetBytes("box|" + purpose));
}
