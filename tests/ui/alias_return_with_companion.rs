// The wrapper sees through the alias (its Err is never cached), but the
// companion cannot name the cached type: the compiler says what to do.
type ApiResult<T> = Result<T, String>;

#[cacheside::cache(key = "alias:{id}")]
async fn aliased(id: u32) -> ApiResult<u32> {
    Ok(id)
}

// With the companion off, the same function compiles.
#[cacheside::cache(key = "alias2:{id}", companion = false)]
async fn aliased_without_companion(id: u32) -> ApiResult<u32> {
    Ok(id)
}

fn main() {}
