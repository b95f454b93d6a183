import Tensor

/// The reference's image pool (Shrivastava et al. 2017): the discriminators
/// see a mix of the newest fakes and fakes from earlier iterations.
///
/// Until the pool holds `size` images, every fake is kept and returned. After
/// that, with probability ½ a fake is swapped for a random kept one (which is
/// returned), otherwise it is returned as it is. Size 0 returns every fake.
struct ImagePool {
    let size: Int
    private(set) var images: [Tensor] = []
    /// Its own stream, so that a checkpoint can save it.
    var random: SplitMix64

    init(size: Int, random: SplitMix64) {
        self.size = size
        self.random = random
    }

    /// Restores a saved pool.
    init(size: Int, images: [Tensor], random: SplitMix64) {
        self.size = size
        self.images = images
        self.random = random
    }

    mutating func query(_ fake: Tensor) -> Tensor {
        guard size > 0 else { return fake }
        if images.count < size {
            images.append(fake.copy())
            return fake
        }
        guard random.uniform() > 0.5 else { return fake }
        let i = random.int(in: 0...(size - 1))
        let old = images[i]
        images[i] = fake.copy()
        return old
    }
}
