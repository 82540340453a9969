using System.Security.Cryptography;

namespace Appliance.Wire.Auth;

/// <summary>
/// A 32-byte secret key. It never prints itself: <see cref="ToString"/> hides it, so it cannot leak into a log or an
/// error message by accident. Only <see cref="ToBase64"/> (for the keyring file) reveals it.
/// </summary>
public sealed class Secret : IEquatable<Secret>
{
    public const int Size = 32;
    private readonly byte[] _key;

    public Secret(ReadOnlySpan<byte> key)
    {
        if (key.Length != Size)
        {
            throw new ArgumentException($"a secret is {Size} bytes, not {key.Length}");
        }
        _key = key.ToArray();
    }

    public static Secret Generate() => new(RandomNumberGenerator.GetBytes(Size));

    public static Secret FromBase64(string text)
    {
        Span<byte> buffer = stackalloc byte[64];
        if (!Convert.TryFromBase64String(text.Trim(), buffer, out var n) || n != Size)
        {
            throw new FormatException($"a key must be {Size} bytes in base64");
        }
        return new Secret(buffer[..n]);
    }

    internal ReadOnlySpan<byte> Bytes => _key;

    public string ToBase64() => Convert.ToBase64String(_key);

    public override string ToString() => "<secret>";

    public bool Equals(Secret? other) => other is not null && CryptographicOperations.FixedTimeEquals(_key, other._key);

    public override bool Equals(object? obj) => Equals(obj as Secret);

    public override int GetHashCode() => 0; // never hash a secret into something observable
}
