namespace Appliance.Tests.Common;

/// <summary>A temporary directory on the real filesystem (not tmpfs), removed at dispose. Compiled into every test
/// project from tests/Common (see tests/Directory.Build.props).</summary>
public sealed class TempDir : IDisposable
{
    public TempDir()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "appliance-test-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
            // Best effort: a test that failed may still hold a file open; the OS temp cleaner gets it later.
        }
    }
}
