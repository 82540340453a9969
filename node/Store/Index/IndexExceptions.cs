namespace Appliance.Store.Index;

/// <summary>
/// An index page failed a check when read (magic, version, kind, its own page number, generation, crc32c, its place
/// in the tree): the page is never used, and the operation that needed it fails. The store reports it like any
/// <see cref="CorruptionException"/> (fsck says which page and why); the data it indexed is not guessed at.
/// </summary>
public sealed class PageCorruptionException(long page, string reason)
    : StoreException($"index page {page} is damaged: {reason}")
{
    public long Page { get; } = page;
    public string Reason { get; } = reason;
}

/// <summary>A key longer than <see cref="BPlusTree.MaxKeyLength"/>; the operation had no effect.</summary>
public sealed class KeyTooLargeException(int length)
    : StoreException($"index key of {length} bytes is longer than the limit of {BPlusTree.MaxKeyLength}")
{
    public int Length { get; } = length;
}

/// <summary>A value longer than <see cref="BPlusTree.MaxValueLength"/>; the operation had no effect.</summary>
public sealed class ValueTooLargeException(int length)
    : StoreException($"index value of {length} bytes is longer than the limit of {BPlusTree.MaxValueLength}")
{
    public int Length { get; } = length;
}
